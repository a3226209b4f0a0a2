import type { EntityManager } from '@mikro-orm/postgresql';
import { notifyExecution } from '../events/notify.js';
import { outcomeOf, type ExecutionStatusName } from './execution-state.js';

export interface Settlement {
  executionId: string;
  /** The status the execution reached in this call, or null if it stayed as it was. */
  finalized: Exclude<ExecutionStatusName, 'running'> | null;
  /** True when the stored counters disagreed with the job rows before this call. */
  countersWereStale: boolean;
}

/**
 * Recomputes an execution's counters from its job rows and, when no job is left live, moves it
 * to its terminal status and refreshes its flow's statistics from the execution rows.
 *
 * Call it inside the transaction that made a job terminal. The row lock on the execution
 * serialises concurrent endings of its jobs: under READ COMMITTED the second caller's count
 * runs after the first commits, so the last job to end always sees every other one ended.
 */
export async function settleExecution(tx: EntityManager, executionId: string): Promise<Settlement> {
  const locked = await tx.execute<{ status: ExecutionStatusName; flow_id: string | null; jobs_total: number; jobs_succeeded: number; jobs_failed: number; jobs_cancelled: number }[]>(
    'select status, flow_id, jobs_total, jobs_succeeded, jobs_failed, jobs_cancelled from executions where id = ? for update',
    [executionId],
  );
  const e = locked[0];
  if (!e) return { executionId, finalized: null, countersWereStale: false };
  const [c] = await tx.execute<{ total: string; succeeded: string; failed: string; cancelled: string; bytes: number | null }[]>(
    `select count(*) as total,
            count(*) filter (where status = 'succeeded') as succeeded,
            count(*) filter (where status = 'failed') as failed,
            count(*) filter (where status = 'cancelled') as cancelled,
            sum(coalesce((progress->>'bytesDone')::float8, 0)) as bytes
       from jobs where execution_id = ?`,
    [executionId],
  );
  const counts = { total: Number(c!.total), succeeded: Number(c!.succeeded), failed: Number(c!.failed), cancelled: Number(c!.cancelled) };
  const countersWereStale =
    e.jobs_total !== counts.total || e.jobs_succeeded !== counts.succeeded || e.jobs_failed !== counts.failed || e.jobs_cancelled !== counts.cancelled;
  const outcome = e.status === 'running' ? outcomeOf(counts) : null;
  // An execution ends when its last job ended. now() is this transaction's start, and a job that
  // ended in a transaction that started later but committed first has a later completed_at; with
  // 50 jobs ending at once, now() alone made the execution end 1 ms before one of them.
  await tx.execute(
    `update executions set jobs_total = ?, jobs_succeeded = ?, jobs_failed = ?, jobs_cancelled = ?, bytes_done = ?,
       status = coalesce(?, status),
       completed_at = case when ? is not null then greatest(now(), (select max(completed_at) from jobs where execution_id = ?)) else completed_at end
     where id = ?`,
    [counts.total, counts.succeeded, counts.failed, counts.cancelled, Number(c!.bytes ?? 0), outcome, outcome, executionId, executionId],
  );
  if (outcome && e.flow_id) await refreshFlowStatistics(tx, e.flow_id);
  if (outcome) await notifyExecution(tx, executionId);
  return { executionId, finalized: outcome, countersWereStale };
}

/** Flow statistics are derived from its execution rows, never incremented on the side. */
export async function refreshFlowStatistics(tx: EntityManager, flowId: string): Promise<void> {
  await tx.execute(
    `update flows f set
       executions_total = s.total, executions_succeeded = s.succeeded, executions_partial = s.partial,
       executions_failed = s.failed, executions_cancelled = s.cancelled, bytes_total = s.bytes,
       last_execution_id = l.id, last_execution_status = l.status, last_execution_at = l.completed_at
     from (select count(*) filter (where status <> 'running') as total,
                  count(*) filter (where status = 'succeeded') as succeeded,
                  count(*) filter (where status = 'partial') as partial,
                  count(*) filter (where status = 'failed') as failed,
                  count(*) filter (where status = 'cancelled') as cancelled,
                  coalesce(sum(bytes_done) filter (where status <> 'running'), 0) as bytes
             from executions where flow_id = ?) s,
          lateral (select id, status, completed_at from executions where flow_id = ? and status <> 'running'
                   order by completed_at desc limit 1) l
     where f.id = ?`,
    [flowId, flowId, flowId],
  );
}
