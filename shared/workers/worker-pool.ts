import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { WorkerPoolError } from './worker-pool-error.js';
import type { WorkerReplyEnvelope, WorkerRequestEnvelope } from './worker-protocol.js';
import { resolveWorkerEntry, startWorker, type WorkerEntry } from './worker-script.js';

export interface WorkerPoolOptions {
  /** Where the worker's compiled .js is (the .ts beside it is used when running from sources). */
  script: URL;
  /** Threads; default os.availableParallelism(). */
  size?: number;
  /** An idle thread exits after this long, so a process between bursts of work holds no threads. Default 10 s. */
  idleTimeoutMs?: number;
}

/** A task's answer and how long the worker computed it (for the stage's busy fraction). */
export interface TaskOutcome<R> {
  reply: R;
  busyMs: number;
}

interface PendingTask<T, R> {
  id: number;
  task: T;
  transfer: ArrayBuffer[];
  resolve: (outcome: TaskOutcome<R>) => void;
  reject: (err: Error) => void;
  /** Settles the caller's promise once; later answers for the task are dropped. */
  settled: boolean;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface PoolThread<T, R> {
  worker: Worker;
  /** worker.threadId reads -1 once the thread has exited; kept for error details. */
  threadId: number;
  current: PendingTask<T, R> | null;
  /** The uncaught error the thread reported before exiting, if any. */
  crash: Error | null;
  idleTimer: NodeJS.Timeout | null;
}

/**
 * A small pool of worker threads running one script, one task per thread at a time. Threads start
 * on demand and exit when idle. A thread that dies fails only the task it was running (with
 * WORKER_CRASHED); later tasks get a fresh thread, so a pool shared by several users survives
 * one bad task. A cancelled task's promise rejects at once; a thread still computing it finishes,
 * drops the answer and returns to the pool. close() terminates every thread.
 */
export class WorkerPool<T, R> {
  readonly size: number;
  private readonly entry: WorkerEntry;
  private readonly idleTimeoutMs: number;
  private readonly threads = new Set<PoolThread<T, R>>();
  private readonly queue: PendingTask<T, R>[] = [];
  private nextId = 1;
  private closed = false;

  constructor(opts: WorkerPoolOptions) {
    this.size = opts.size ?? availableParallelism();
    if (!Number.isInteger(this.size) || this.size < 1) {
      throw new WorkerPoolError('INVALID_INPUT', `worker pool size must be a positive integer, got ${this.size}`, { argument: 'size' });
    }
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 10_000;
    this.entry = resolveWorkerEntry(opts.script);
  }

  /**
   * Starts the threads that are not running yet, so the next tasks do not wait for a thread to
   * load (tens of ms each); they go idle, and exit after the idle timeout like any other.
   */
  warm(): void {
    while (!this.closed && this.threads.size < this.size) this.goIdle(this.spawn());
  }

  /** Live threads (busy or idle). */
  get threadCount(): number {
    return this.threads.size;
  }

  /** Whether the worker runs compiled JS or the .ts source through the transpiling loader. */
  get mode(): WorkerEntry['mode'] {
    return this.entry.mode;
  }

  /** Runs `task` on a free thread; `transfer` lists the ArrayBuffers moved (not copied) to it. */
  run(task: T, transfer: ArrayBuffer[], signal?: AbortSignal): Promise<TaskOutcome<R>> {
    return new Promise<TaskOutcome<R>>((resolve, reject) => {
      if (this.closed) return reject(new WorkerPoolError('ABORTED', 'worker pool is closed', {}));
      if (signal?.aborted) return reject(new WorkerPoolError('ABORTED', 'task cancelled', {}, { cause: signal.reason }));
      const pending: PendingTask<T, R> = { id: this.nextId++, task, transfer, resolve, reject, settled: false, signal };
      if (signal) {
        pending.onAbort = () => {
          const queued = this.queue.indexOf(pending);
          if (queued >= 0) this.queue.splice(queued, 1);
          this.settle(pending, new WorkerPoolError('ABORTED', 'task cancelled', {}, { cause: signal.reason }));
        };
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.queue.push(pending);
      this.dispatch();
    });
  }

  /** Terminates every thread; queued and running tasks reject with ABORTED. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    for (const pending of this.queue.splice(0)) this.settle(pending, new WorkerPoolError('ABORTED', 'worker pool closed', {}));
    const exits = [...this.threads].map(async (t) => {
      if (t.current) this.settle(t.current, new WorkerPoolError('ABORTED', 'worker pool closed', {}));
      if (t.idleTimer) clearTimeout(t.idleTimer);
      await t.worker.terminate();
    });
    await Promise.all(exits);
    this.threads.clear();
  }

  private dispatch(): void {
    while (this.queue.length > 0 && !this.closed) {
      let thread = [...this.threads].find((t) => t.current === null);
      if (!thread) {
        if (this.threads.size >= this.size) return;
        thread = this.spawn();
      }
      const pending = this.queue.shift()!;
      if (thread.idleTimer) clearTimeout(thread.idleTimer);
      thread.idleTimer = null;
      thread.current = pending;
      // Referenced only while busy: an idle pool never keeps the process alive.
      thread.worker.ref();
      const msg: WorkerRequestEnvelope<T> = { id: pending.id, task: pending.task };
      thread.worker.postMessage(msg, pending.transfer);
    }
  }

  private spawn(): PoolThread<T, R> {
    const worker = startWorker(this.entry);
    const thread: PoolThread<T, R> = { worker, threadId: worker.threadId, current: null, crash: null, idleTimer: null };
    this.threads.add(thread);
    worker.on('message', (envelope: WorkerReplyEnvelope<R>) => this.onReply(thread, envelope));
    worker.on('error', (err) => {
      thread.crash = err;
    });
    worker.on('messageerror', (err) => {
      // An answer that cannot be deserialised: the thread is in an unknown state, so end it.
      thread.crash = err;
      void worker.terminate();
    });
    worker.on('exit', (exitCode) => this.onExit(thread, exitCode));
    return thread;
  }

  private onReply(thread: PoolThread<T, R>, envelope: WorkerReplyEnvelope<R>): void {
    const pending = thread.current;
    if (!pending || pending.id !== envelope.id) {
      thread.crash = new Error(`worker answered task ${envelope.id}, but runs ${pending?.id ?? 'none'}`);
      void thread.worker.terminate();
      return;
    }
    thread.current = null;
    if (envelope.ok) this.settle(pending, null, { reply: envelope.reply, busyMs: envelope.busyMs });
    else {
      const cause = new Error(envelope.message);
      if (envelope.stack) cause.stack = envelope.stack;
      this.settle(pending, new WorkerPoolError('WORKER_TASK_FAILED', `worker task failed: ${envelope.message}`, { operation: describeTask(pending.task) }, { cause }));
    }
    this.goIdle(thread);
    this.dispatch();
  }

  private goIdle(thread: PoolThread<T, R>): void {
    thread.worker.unref();
    if (this.closed) return;
    thread.idleTimer = setTimeout(() => {
      if (thread.current === null) void thread.worker.terminate();
    }, this.idleTimeoutMs);
    thread.idleTimer.unref();
  }

  private onExit(thread: PoolThread<T, R>, exitCode: number): void {
    this.threads.delete(thread);
    if (thread.idleTimer) clearTimeout(thread.idleTimer);
    const pending = thread.current;
    thread.current = null;
    if (pending) {
      const why = thread.crash ? `: ${thread.crash.message}` : '';
      this.settle(
        pending,
        new WorkerPoolError('WORKER_CRASHED', `worker thread ${thread.threadId} exited with code ${exitCode} while running a task${why}`, { threadId: thread.threadId, exitCode }, { cause: thread.crash ?? undefined }),
      );
    }
    this.dispatch();
  }

  private settle(pending: PendingTask<T, R>, err: Error | null, outcome?: TaskOutcome<R>): void {
    if (pending.settled) return;
    pending.settled = true;
    if (pending.signal && pending.onAbort) pending.signal.removeEventListener('abort', pending.onAbort);
    if (err) pending.reject(err);
    else pending.resolve(outcome!);
  }
}

function describeTask(task: unknown): string {
  return typeof task === 'object' && task !== null && 'op' in task ? String(task.op) : 'task';
}
