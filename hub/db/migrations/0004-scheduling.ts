import { Migration } from '@mikro-orm/migrations';

/**
 * Time for the lifecycle: each flow's next scheduled run, the record of every tick (started,
 * caught up after downtime, or skipped), retention after an execution, and the ticks of the
 * hub's own maintenance schedule (garbage collection).
 */
export class Migration0004Scheduling extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table flows add column next_run_at timestamptz null`);
    this.addSql(`alter table executions
      add column scheduled_for timestamptz null,
      add column catch_up boolean not null default false,
      add column retention_started_at timestamptz null`);
    // One row per tick of a flow's schedule. The primary key is what makes two hubs on one
    // database start a tick at most once: the second insert of the same tick does nothing.
    this.addSql(`create table flow_ticks (
      flow_id uuid not null references flows (id) on delete cascade,
      tick_at timestamptz not null,
      outcome text not null check (outcome in ('started', 'catch_up', 'skipped')),
      missed_ticks integer not null default 0,
      execution_id uuid null references executions (id),
      reason text null,
      recorded_at timestamptz not null,
      primary key (flow_id, tick_at)
    )`);
    this.addSql(`create table maintenance_ticks (
      kind text not null,
      tick_at timestamptz not null,
      job_id uuid null,
      recorded_at timestamptz not null,
      primary key (kind, tick_at)
    )`);
    this.addSql(`create index executions_retention_due_idx on executions (completed_at) where retention_started_at is null and status in ('succeeded', 'partial')`);
  }
}
