import { Migration } from '@mikro-orm/migrations';

/**
 * Jobs (backup and restore on agents; verify, prune and gc on the hub), committed backups, and
 * the indexes agents send before a commit.
 */
export class Migration0002JobsAndBackups extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table jobs (
      id uuid primary key,
      kind text not null check (kind in ('backup', 'restore', 'verify', 'prune', 'gc')),
      -- Hub jobs (verify, prune, gc) run on the hub and have no agent.
      agent_id uuid null references agents (id),
      target_id text null,
      constraint jobs_agent check ((kind in ('backup', 'restore')) = (agent_id is not null)),
      status text not null check (status in ('queued', 'dispatched', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled')),
      phase text null check (phase in ('snapshotting', 'transferring', 'finalizing')),
      params jsonb not null,
      command_id uuid not null,
      progress jsonb null,
      last_seq bigint not null default 0,
      error_code text null,
      error_message text null,
      backup_id uuid null,
      result jsonb null,
      created_at timestamptz not null,
      started_at timestamptz null,
      last_event_at timestamptz null,
      completed_at timestamptz null,
      -- DESIGN §1: a terminal job has completed_at, a live one does not; a failure names its reason.
      constraint jobs_completed_at check ((status in ('succeeded', 'failed', 'cancelled')) = (completed_at is not null)),
      constraint jobs_error check (status in ('succeeded', 'queued', 'dispatched', 'running', 'cancelling') or error_code is not null)
    )`);
    this.addSql(`create index jobs_agent_live_idx on jobs (agent_id) where status not in ('succeeded', 'failed', 'cancelled')`);
    // One job at a time per target: at most one live job per (agent, target).
    this.addSql(`create unique index jobs_one_live_per_target on jobs (agent_id, target_id) where status not in ('succeeded', 'failed', 'cancelled') and kind = 'backup'`);
    this.addSql(`create table backups (
      id uuid primary key,
      job_id uuid not null unique references jobs (id),
      agent_id uuid not null references agents (id),
      target_id text not null,
      parent_backup_id uuid null,
      disks jsonb not null,
      bytes_total double precision not null,
      created_at timestamptz not null
    )`);
    this.addSql(`create index backups_target_idx on backups (agent_id, target_id, created_at desc)`);
    this.addSql(`create table job_disk_indexes (
      job_id uuid not null references jobs (id) on delete cascade,
      disk_name text not null,
      disk_size double precision not null,
      digests bytea not null,
      received_at timestamptz not null,
      primary key (job_id, disk_name)
    )`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table job_disk_indexes');
    this.addSql('drop table backups');
    this.addSql('drop table jobs');
  }
}
