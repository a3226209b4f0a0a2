import type { WorkerPoolErrorDetails } from '../../shared/workers/worker-pool-error.js';

/**
 * Errors the block pipeline raises. Each has a stable code and typed details; callers (the job
 * runner, the final report) match on the code, never on the message. The chunk worker pool's
 * errors (WORKER_CRASHED, WORKER_TASK_FAILED, WORKER_UNAVAILABLE, INVALID_INPUT, ABORTED; see
 * WorkerPoolErrorDetails) keep their code and details here.
 */
export interface PipelineErrorDetails extends WorkerPoolErrorDetails {
  /** The driver failed to list extents or to read blocks; `cause` holds the driver's error. */
  READ_FAILED: { disk: string; operation: 'allocation' | 'changed' | 'read'; offset?: number; length?: number };
  /** A sink call failed (network, hub refused the chunk, ...); `cause` holds the sink's error. */
  SINK_FAILED: { operation: 'missing' | 'upload'; digest?: string };
  /** The sink answered something it cannot have meant, e.g. a digest that was not asked about. */
  SINK_PROTOCOL: { operation: 'missing'; digest: string };
}

export type PipelineErrorCode = keyof PipelineErrorDetails;

export class PipelineError<C extends PipelineErrorCode = PipelineErrorCode> extends Error {
  /**
   * Errors raised after this one while the pipeline was stopping, other than the cancellations
   * the stop itself caused. Kept so no failure goes unseen, but this error is the one to report.
   */
  readonly suppressed: Error[] = [];

  constructor(
    readonly code: C,
    message: string,
    readonly details: PipelineErrorDetails[C],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PipelineError';
  }
}

export function isPipelineError<C extends PipelineErrorCode>(err: unknown, code: C): err is PipelineError<C> {
  return err instanceof PipelineError && err.code === code;
}

export function abortedError(signal: AbortSignal): PipelineError<'ABORTED'> {
  return new PipelineError('ABORTED', 'backup pipeline cancelled', {}, { cause: signal.reason });
}

export { messageOf } from '../../shared/workers/worker-pool-error.js';
