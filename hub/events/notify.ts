import type { EntityManager } from '@mikro-orm/postgresql';
import { EVENTS_CHANNEL, type LifecycleEventType } from './lifecycle-event.js';

/*
 * The events are built in SQL from the rows as the calling transaction sees them, and sent with
 * pg_notify on that transaction: listeners get them only once it commits, and never if it rolls
 * back. Payloads stay far below NOTIFY's 8000-byte limit.
 */

/** Announces a job's status, phase or progress as the row now says it. */
export async function notifyJob(em: EntityManager, jobId: string, type: Extract<LifecycleEventType, `job.${string}`>): Promise<void> {
  await em.execute(
    `select pg_notify(?, json_build_object(
       'type', ?::text, 'job_id', j.id, 'kind', j.kind, 'execution_id', j.execution_id, 'flow_id', e.flow_id,
       'status', j.status, 'phase', j.phase,
       'bytes_done', coalesce((j.progress->>'bytesDone')::float8, 0),
       'bytes_total', coalesce((j.progress->>'bytesTotal')::float8, 0),
       'percent', case when j.status = 'succeeded' then 100
                       when coalesce((j.progress->>'bytesTotal')::float8, 0) > 0
                         then least(99, floor(100 * (j.progress->>'bytesDone')::float8 / (j.progress->>'bytesTotal')::float8))
                       else 0 end,
       'error_code', j.error_code, 'at', now())::text)
       from jobs j left join executions e on e.id = j.execution_id where j.id = ?`,
    [EVENTS_CHANNEL, type, jobId],
  );
}

/** Announces an execution's status and counters as the row now says them. */
export async function notifyExecution(em: EntityManager, executionId: string): Promise<void> {
  await em.execute(
    `select pg_notify(?, json_build_object(
       'type', 'execution.status', 'execution_id', id, 'flow_id', flow_id, 'status', status,
       'jobs_total', jobs_total, 'jobs_succeeded', jobs_succeeded, 'jobs_failed', jobs_failed, 'jobs_cancelled', jobs_cancelled,
       'at', now())::text)
       from executions where id = ?`,
    [EVENTS_CHANNEL, executionId],
  );
}
