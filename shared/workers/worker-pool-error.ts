/**
 * Errors a WorkerPool raises about its threads (not about what a task computes: a task's own
 * answer, failure included, is its caller's business). Each has a stable code and typed details.
 * The codes match the agent pipeline's PipelineError codes of the same name, which wraps these.
 */
export interface WorkerPoolErrorDetails {
  /** A worker thread died (uncaught exception, exit, out of memory) while running the task. */
  WORKER_CRASHED: { threadId: number; exitCode: number | null };
  /** The task threw inside the worker; the worker itself is still fine. */
  WORKER_TASK_FAILED: { operation: string };
  /** The worker script cannot be located or started (neither compiled .js nor .ts source found). */
  WORKER_UNAVAILABLE: { script: string };
  /** The caller passed something malformed: a pool size, or (in the agent pipeline) a disk size, parent digests, an option. */
  INVALID_INPUT: { argument: string };
  /** Cancelled through the AbortSignal (`cause` is its reason), or the pool was closed. Nothing of it keeps running. */
  ABORTED: Record<string, never>;
}

export type WorkerPoolErrorCode = keyof WorkerPoolErrorDetails;

export class WorkerPoolError<C extends WorkerPoolErrorCode = WorkerPoolErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    readonly details: WorkerPoolErrorDetails[C],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'WorkerPoolError';
  }
}

export function isWorkerPoolError<C extends WorkerPoolErrorCode>(err: unknown, code: C): err is WorkerPoolError<C> {
  return err instanceof WorkerPoolError && err.code === code;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
