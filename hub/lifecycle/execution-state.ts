/**
 * The execution state machine of DESIGN §1, written once, as data.
 *
 *   running → succeeded | partial | failed | cancelled
 *
 * An execution leaves `running` exactly when its last job becomes terminal; its outcome is a
 * function of its jobs' outcomes alone (see `outcomeOf`), so the event path and the reconciler
 * always agree.
 */
export const EXECUTION_STATUSES = ['running', 'succeeded', 'partial', 'failed', 'cancelled'] as const;
export type ExecutionStatusName = (typeof EXECUTION_STATUSES)[number];

export const EXECUTION_TRIGGERS = ['manual', 'scheduled', 'api'] as const;
export type ExecutionTrigger = (typeof EXECUTION_TRIGGERS)[number];

export const EXECUTION_TRANSITIONS: Record<ExecutionStatusName, readonly ExecutionStatusName[]> = {
  running: ['succeeded', 'partial', 'failed', 'cancelled'],
  succeeded: [],
  partial: [],
  failed: [],
  cancelled: [],
};

export interface JobOutcomeCounts {
  total: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

/**
 * The terminal status of an execution whose jobs are all terminal:
 * every job succeeded → succeeded; some succeeded → partial; none succeeded and any failed →
 * failed; all cancelled → cancelled. Null while a job is still live.
 */
export function outcomeOf(c: JobOutcomeCounts): Exclude<ExecutionStatusName, 'running'> | null {
  if (c.succeeded + c.failed + c.cancelled < c.total) return null;
  if (c.succeeded === c.total) return 'succeeded';
  if (c.succeeded > 0) return 'partial';
  if (c.failed > 0) return 'failed';
  return 'cancelled';
}
