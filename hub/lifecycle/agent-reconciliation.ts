import type { EntityManager } from '@mikro-orm/postgresql';
import { JobStatus, type HeldJob } from '../../shared/gen/backhaul/v1/agent.js';
import { isUuid } from '../../shared/uuid.js';
import type { Logger } from '../../shared/logger.js';
import { appendJobLog } from '../jobs/job-log.js';
import { JobStore } from '../jobs/job-store.js';
import { TERMINAL, type JobStatusName } from '../jobs/job-state.js';

const LIVE_ON_AGENT = new Set<JobStatus>([JobStatus.JOB_STATUS_DISPATCHED, JobStatus.JOB_STATUS_RUNNING, JobStatus.JOB_STATUS_CANCELLING]);

/**
 * Reconciles the jobs the database gives an agent with the jobs the agent says it holds in its
 * Hello (running ones, and those whose final report still waits for an ack):
 * - a job the agent holds: it is alive again, so it is no longer stalled;
 * - a start command never acknowledged: left to the dispatcher, which re-sends it;
 * - a job the agent accepted but no longer holds: the agent restarted and cleaned it up; the job
 *   fails AGENT_LOST (or, if it was being cancelled, is cancelled);
 * - a job the agent still runs that is terminal here, or unknown: returned, so the agent is told
 *   to abort it and clean up.
 */
export async function reconcileHeldJobs(em: EntityManager, agentId: string, held: HeldJob[], log: Logger): Promise<string[]> {
  const heldIds = new Set(held.map((h) => h.jobId));
  const rows = await em.execute<{ id: string; status: JobStatusName; acked_at: Date | null }[]>(
    `select id, status, acked_at from jobs where agent_id = ? and status in ('dispatched', 'running', 'cancelling')`,
    [agentId],
  );
  const jobs = new JobStore(em);
  for (const r of rows) {
    if (heldIds.has(r.id)) {
      await em.execute('update jobs set stalled_at = null, stall_reason = null, last_event_at = now() where id = ? and stalled_at is not null', [r.id]);
      continue;
    }
    if (r.status === 'dispatched' && !r.acked_at) continue;
    const ended =
      r.status === 'cancelling'
        ? await jobs.transition(r.id, 'cancelled', { errorCode: 'CANCELLED', errorMessage: 'cancelled; the agent restarted and no longer holds the job' })
        : await jobs.transition(r.id, 'failed', { errorCode: 'AGENT_LOST', errorMessage: 'the agent restarted and no longer holds the job' });
    if (ended) log.warn({ job_id: r.id, status: ended.status }, 'job lost in an agent restart');
  }
  const running = held.filter((h) => LIVE_ON_AGENT.has(h.status));
  if (running.length === 0) return [];
  const ids = running.map((h) => h.jobId).filter(isUuid);
  const known = await em.execute<{ id: string; status: JobStatusName; agent_id: string }[]>('select id, status, agent_id from jobs where id = any(?::uuid[])', [`{${ids.join(',')}}`]);
  const toAbort: string[] = [];
  for (const h of running) {
    const k = known.find((x) => x.id === h.jobId);
    if (k && k.agent_id === agentId && !TERMINAL.has(k.status)) continue;
    toAbort.push(h.jobId);
    if (k && k.agent_id === agentId) await appendJobLog(em, k.id, 'info', `the agent still ran the ${k.status} job after a reconnect; told it to abort and clean up`);
  }
  return toAbort;
}
