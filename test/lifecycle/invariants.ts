import { expect } from 'vitest';
import { query } from '../support/database.js';

/**
 * The truth rules of DESIGN §1 as queries over the whole database; each returns the rows that
 * break the rule, so a failure names them. Run after every lifecycle test. (That no progress went
 * backwards is checked while the tests poll, by ProgressWatch.)
 */
const RULES: Record<string, string> = {
  'a terminal job lacks completed_at, or a live one has it': `
    select id, status, completed_at from jobs
     where (status in ('succeeded', 'failed', 'cancelled')) <> (completed_at is not null)`,
  'a terminal execution lacks completed_at, or a running one has it': `
    select id, status, completed_at from executions
     where (status <> 'running') <> (completed_at is not null)`,
  'an ended execution ended before one of its jobs did': `
    select e.id, e.completed_at, j.id as job_id, j.completed_at as job_completed_at from executions e
      join jobs j on j.execution_id = e.id
     where e.status <> 'running' and j.completed_at > e.completed_at`,
  'an execution is running while all its jobs are terminal': `
    select e.id from executions e
     where e.status = 'running'
       and not exists (select 1 from jobs j where j.execution_id = e.id and j.status in ('queued', 'dispatched', 'running', 'cancelling'))`,
  'an execution has ended while a job of it is live': `
    select e.id, e.status from executions e
     where e.status <> 'running'
       and exists (select 1 from jobs j where j.execution_id = e.id and j.status in ('queued', 'dispatched', 'running', 'cancelling'))`,
  "an execution's counters differ from its job rows": `
    select e.id, e.jobs_total, e.jobs_succeeded, e.jobs_failed, e.jobs_cancelled, k.* from executions e
      join lateral (select count(*)::int as t, (count(*) filter (where status = 'succeeded'))::int as s,
                           (count(*) filter (where status = 'failed'))::int as f, (count(*) filter (where status = 'cancelled'))::int as c
                      from jobs j where j.execution_id = e.id) k on true
     where (e.jobs_total, e.jobs_succeeded, e.jobs_failed, e.jobs_cancelled) <> (k.t, k.s, k.f, k.c)`,
  "an ended execution's status is not the outcome of its jobs": `
    select e.id, e.status, e.jobs_total, e.jobs_succeeded, e.jobs_failed, e.jobs_cancelled from executions e
     where e.status <> 'running' and e.status <> case
       when e.jobs_succeeded = e.jobs_total then 'succeeded'
       when e.jobs_succeeded > 0 then 'partial'
       when e.jobs_failed > 0 then 'failed'
       else 'cancelled' end`,
  'a job that did not succeed has no error code or message': `
    select id, status from jobs where status in ('failed', 'cancelled') and (error_code is null or error_message is null)`,
  // (Its backup may be gone since, pruned or deleted; that it was committed is what counts.)
  'a succeeded backup job names no committed backup': `
    select j.id from jobs j where j.kind = 'backup' and j.status = 'succeeded' and j.backup_id is null`,
  "a flow's statistics differ from its executions": `
    select f.id, f.executions_total, s.total from flows f
      join lateral (select count(*) filter (where status <> 'running')::int as total,
                           count(*) filter (where status = 'succeeded')::int as succeeded,
                           count(*) filter (where status = 'failed')::int as failed
                      from executions where flow_id = f.id) s on true
     where (f.executions_total, f.executions_succeeded, f.executions_failed) <> (s.total, s.succeeded, s.failed)`,
};

export async function assertInvariants(dbUrl: string): Promise<void> {
  const broken: Record<string, unknown[]> = {};
  for (const [rule, sql] of Object.entries(RULES)) {
    const rows = await query(dbUrl, sql);
    if (rows.length > 0) broken[rule] = rows;
  }
  expect(broken).toEqual({});
}

/** Executions still running; after a test's executions have ended there must be none. */
export async function runningExecutions(dbUrl: string): Promise<string[]> {
  return (await query<{ id: string }>(dbUrl, `select id from executions where status = 'running'`)).map((r) => r.id);
}
