import type { ExecutionStatusName } from '../lifecycle/execution-state.js';
import type { JobPhaseName, JobStatusName } from '../jobs/job-state.js';

/**
 * What the live event stream carries: a change of a job's status or phase, a job's progress, or
 * a change of an execution's status. Each is written by the transaction that made the change
 * (PostgreSQL NOTIFY is delivered only on commit), so no event claims a state the database
 * does not hold.
 */
export type LifecycleEvent =
  | {
      type: 'job.status' | 'job.phase' | 'job.progress';
      job_id: string;
      kind: string;
      execution_id: string | null;
      flow_id: string | null;
      status: JobStatusName;
      phase: JobPhaseName | null;
      bytes_done: number;
      bytes_total: number;
      /** From bytes; 100 only once the job succeeded. */
      percent: number;
      error_code: string | null;
      at: string;
    }
  | {
      type: 'execution.status';
      execution_id: string;
      flow_id: string | null;
      status: ExecutionStatusName;
      jobs_total: number;
      jobs_succeeded: number;
      jobs_failed: number;
      jobs_cancelled: number;
      at: string;
    };

export type LifecycleEventType = LifecycleEvent['type'];

/** Said to a stream's client instead of events it cannot have: it must refetch the state it shows. */
export interface RefetchNotice {
  type: 'refetch';
  reason: string;
}

/** The PostgreSQL channel every hub listens on. */
export const EVENTS_CHANNEL = 'backhaul_events';
