import { Migration } from '@mikro-orm/migrations';

/**
 * The lifecycle of DESIGN §1: targets, protection flows, executions, the jobs' dispatch and
 * silence bookkeeping, job logs, and the API tokens of the REST facade.
 */
export class Migration0003Lifecycle extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table api_tokens (
      id uuid primary key,
      name text not null,
      role text not null check (role in ('viewer', 'operator', 'admin')),
      token_hash text not null unique,
      created_at timestamptz not null,
      last_used_at timestamptz null,
      revoked_at timestamptz null
    )`);
    // A target is one VM (or image) on one agent: reported in its inventory or added by the API.
    // `ref` is the agent's own id for it; jobs and backups name it by (agent_id, ref).
    this.addSql(`create table targets (
      id uuid primary key,
      agent_id uuid not null references agents (id),
      ref text not null,
      name text not null,
      driver text not null,
      disks jsonb not null,
      options jsonb not null default '{}'::jsonb,
      source text not null check (source in ('inventory', 'api')),
      created_at timestamptz not null,
      updated_at timestamptz not null,
      unique (agent_id, ref)
    )`);
    this.addSql(`create table flows (
      id uuid primary key,
      name text not null unique,
      description text null,
      schedule jsonb null,
      retention jsonb null,
      enabled boolean not null default true,
      created_at timestamptz not null,
      updated_at timestamptz not null,
      -- Statistics, recomputed from the execution rows whenever an execution ends.
      last_execution_id uuid null,
      last_execution_status text null,
      last_execution_at timestamptz null,
      executions_total integer not null default 0,
      executions_succeeded integer not null default 0,
      executions_partial integer not null default 0,
      executions_failed integer not null default 0,
      executions_cancelled integer not null default 0,
      bytes_total double precision not null default 0
    )`);
    this.addSql(`create table flow_targets (
      flow_id uuid not null references flows (id) on delete cascade,
      target_id uuid not null references targets (id),
      primary key (flow_id, target_id)
    )`);
    this.addSql(`create table executions (
      id uuid primary key,
      flow_id uuid null references flows (id) on delete set null,
      flow_name text not null,
      trigger text not null check (trigger in ('manual', 'scheduled', 'api')),
      status text not null check (status in ('running', 'succeeded', 'partial', 'failed', 'cancelled')),
      -- Counters, recomputed from the job rows in the transaction of every job's terminal move.
      jobs_total integer not null,
      jobs_succeeded integer not null default 0,
      jobs_failed integer not null default 0,
      jobs_cancelled integer not null default 0,
      bytes_done double precision not null default 0,
      cancel_requested_at timestamptz null,
      created_at timestamptz not null,
      completed_at timestamptz null,
      constraint executions_completed_at check ((status = 'running') = (completed_at is null)),
      constraint executions_counts check (jobs_succeeded + jobs_failed + jobs_cancelled <= jobs_total)
    )`);
    // A flow runs one execution at a time: "run now" on a running flow is a 409, never a second run.
    this.addSql(`create unique index executions_one_running_per_flow on executions (flow_id) where status = 'running'`);
    this.addSql(`create index executions_flow_idx on executions (flow_id, created_at desc)`);
    this.addSql(`alter table jobs
      add column execution_id uuid null references executions (id),
      add column dispatch_attempts integer not null default 0,
      add column dispatched_at timestamptz null,
      add column acked_at timestamptz null,
      add column abort_sent_at timestamptz null,
      add column stalled_at timestamptz null,
      add column stall_reason text null`);
    this.addSql(`create index jobs_execution_idx on jobs (execution_id)`);
    this.addSql(`create index jobs_live_idx on jobs (status) where status not in ('succeeded', 'failed', 'cancelled')`);
    // The task log a job shows in REST and the CLI.
    this.addSql(`create table job_logs (
      id bigserial primary key,
      job_id uuid not null references jobs (id) on delete cascade,
      at timestamptz not null default clock_timestamp(),
      level text not null check (level in ('debug', 'info', 'warn', 'error')),
      message text not null,
      fields jsonb null
    )`);
    this.addSql(`create index job_logs_job_idx on job_logs (job_id, id)`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table job_logs');
    this.addSql('drop index jobs_live_idx');
    this.addSql('drop index jobs_execution_idx');
    this.addSql(`alter table jobs drop column execution_id, drop column dispatch_attempts, drop column dispatched_at,
      drop column acked_at, drop column abort_sent_at, drop column stalled_at, drop column stall_reason`);
    this.addSql('drop table executions');
    this.addSql('drop table flow_targets');
    this.addSql('drop table flows');
    this.addSql('drop table targets');
    this.addSql('drop table api_tokens');
  }
}
