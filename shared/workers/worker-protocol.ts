/**
 * The envelopes a WorkerPool and its worker threads exchange, and the worker's side of them.
 * The task and its answer inside are the pool user's own types; their ArrayBuffers travel in
 * the transfer list (moved, not copied) when the sender names them.
 */
import { parentPort } from 'node:worker_threads';

/** What the worker posts for task `id`. `busyMs` is the worker's own compute time for it. */
export type WorkerReplyEnvelope<R> =
  | { id: number; ok: true; busyMs: number; reply: R }
  | { id: number; ok: false; busyMs: number; message: string; stack?: string };

export interface WorkerRequestEnvelope<T> {
  id: number;
  task: T;
}

/** A task's answer, and the ArrayBuffers of it to move back rather than copy. */
export interface HandledTask<R> {
  reply: R;
  transfer: ArrayBuffer[];
}

/**
 * The worker thread's loop: runs `handle` on each task, one at a time, and answers it. A task that
 * throws is answered with the error's message and stack (the pool rejects it WORKER_TASK_FAILED)
 * and the worker carries on.
 */
export function serveTasks<T, R>(name: string, handle: (task: T) => HandledTask<R>): void {
  const port = parentPort;
  if (!port) throw new Error(`${name} must run in a worker thread`);
  port.on('message', (msg: WorkerRequestEnvelope<T>) => {
    const started = performance.now();
    let envelope: WorkerReplyEnvelope<R>;
    let transfer: ArrayBuffer[];
    try {
      const handled = handle(msg.task);
      transfer = handled.transfer;
      envelope = { id: msg.id, ok: true, busyMs: performance.now() - started, reply: handled.reply };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      envelope = { id: msg.id, ok: false, busyMs: performance.now() - started, message: e.message, stack: e.stack };
      transfer = [];
    }
    port.postMessage(envelope, transfer);
  });
}
