/**
 * The job state machine of DESIGN §1, written once, as data. The database enforces it with
 * guarded updates (`update … where status in (<allowed sources>)`), so two writers can never
 * move a job along two paths, and a terminal job never changes again.
 *
 *   queued → dispatched → running → (cancelling) → succeeded | failed | cancelled
 *   dispatched → queued when the agent has no free slot after all
 */
export const JOB_STATUSES = ['queued', 'dispatched', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatusName = (typeof JOB_STATUSES)[number];

export const TERMINAL: ReadonlySet<JobStatusName> = new Set(['succeeded', 'failed', 'cancelled']);

export const JOB_TRANSITIONS: Record<JobStatusName, readonly JobStatusName[]> = {
  queued: ['dispatched', 'cancelled', 'failed'],
  // Back to the queue when the agent refused the start for lack of a free slot.
  dispatched: ['queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'],
  running: ['cancelling', 'succeeded', 'failed', 'cancelled'],
  cancelling: ['cancelled', 'failed', 'succeeded'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

/** The statuses a job may be in for a move to `to` to be allowed. */
export function sourcesOf(to: JobStatusName): JobStatusName[] {
  return JOB_STATUSES.filter((from) => JOB_TRANSITIONS[from].includes(to));
}

/** Phase while running: snapshotting → transferring → finalizing. Phases only move forward. */
export const JOB_PHASES = ['snapshotting', 'transferring', 'finalizing'] as const;
export type JobPhaseName = (typeof JOB_PHASES)[number];

/** A backup's pipeline stages, whose busy fractions name its bottleneck (StageBusy in agent.proto). */
export const STAGE_NAMES = ['source_read', 'hash_compress', 'network', 'hub_write'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

export function phaseRank(p: JobPhaseName | null): number {
  return p === null ? -1 : JOB_PHASES.indexOf(p);
}

/** Why a job did not succeed: stable codes shown in every interface. */
export const JOB_ERROR_CODES = [
  'AGENT_LOST',
  'STALLED',
  'TIMED_OUT',
  'DISPATCH_FAILED',
  'AGENT_ERROR',
  'DATA_LOSS',
  'COMMIT_FAILED',
  'CANCELLED',
  /** A hub job (verify, prune, gc) hit an unexpected error. */
  'HUB_ERROR',
  /** Another garbage collection holds the lock. */
  'GC_BUSY',
  /** The target already had a job running when the execution started. */
  'TARGET_BUSY',
] as const;
export type JobErrorCode = (typeof JOB_ERROR_CODES)[number];
