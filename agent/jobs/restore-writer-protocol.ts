import { createHash, type Hash } from 'node:crypto';
import { writeSync } from 'node:fs';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import type { HandledTask } from '../../shared/workers/worker-protocol.js';

/**
 * What the restore writer thread is asked, in disk order, for one destination: open it, then
 * zero runs and downloaded chunks, then finish. A chunk's ArrayBuffer is moved to the thread, and
 * moved back once the thread is done with it.
 */
export type RestoreWriteTask =
  /** `fresh`: a new, truncated file, whose zero runs stay holes instead of being written. */
  | { kind: 'open'; fd: number; fresh: boolean }
  | { kind: 'zeros'; offset: number; length: number }
  | { kind: 'chunk'; index: number; offset: number; digest: string; data: ArrayBuffer; byteOffset: number; length: number }
  | { kind: 'finish' };

export type RestoreWriteRefusal = { code: 'DATA_LOSS' | 'WRITE_FAILED'; message: string };

export type RestoreWriteReply =
  | { done: true }
  /** finish: the SHA-256 of the whole image, in disk order. */
  | { sha256: string }
  | { refused: RestoreWriteRefusal };

/** What zero runs hash and write from: one buffer, not a fresh 4 MiB per chunk. */
const ZERO_CHUNK = Buffer.alloc(CHUNK_SIZE);

/** The destination being written on this thread; its image hash lives here between tasks. */
let current: { fd: number; fresh: boolean; image: Hash } | null = null;

/**
 * The thread's side: verifies each chunk (SHA-256 against its digest) before writing it, and adds
 * every byte, zeros included, to the image's SHA-256 in order. The thread runs one task at a time,
 * in the order they were sent (a pool of one thread), so the hash sees the disk in order.
 * A refusal is answered as data; anything else thrown fails the task (WORKER_TASK_FAILED).
 */
export function answerRestoreWriteTask(task: RestoreWriteTask): HandledTask<RestoreWriteReply> {
  if (task.kind === 'open') {
    current = { fd: task.fd, fresh: task.fresh, image: createHash('sha256') };
    return { reply: { done: true }, transfer: [] };
  }
  if (!current) throw new Error(`restore writer: ${task.kind} without an open destination (the thread was restarted?)`);
  const dest = current;
  if (task.kind === 'finish') {
    current = null;
    return { reply: { sha256: dest.image.digest('hex') }, transfer: [] };
  }
  if (task.kind === 'zeros') {
    for (let done = 0; done < task.length; ) {
      const n = Math.min(CHUNK_SIZE, task.length - done);
      const zeros = ZERO_CHUNK.subarray(0, n);
      dest.image.update(zeros);
      // A fresh, truncated file already reads zeros here: leave a hole.
      if (!dest.fresh) {
        const refused = writeAll(dest.fd, zeros, task.offset + done, `zeros at ${task.offset + done}`);
        if (refused) return { reply: { refused }, transfer: [] };
      }
      done += n;
    }
    return { reply: { done: true }, transfer: [] };
  }
  const chunk = Buffer.from(task.data, task.byteOffset, task.length);
  // Moved back either way: freed on the pool's side at once, not at this thread's next collection.
  const back = [task.data];
  if (createHash('sha256').update(chunk).digest('hex') !== task.digest) {
    return { reply: { refused: { code: 'DATA_LOSS', message: `chunk ${task.index} (${task.digest}) does not match its digest` } }, transfer: back };
  }
  dest.image.update(chunk);
  const refused = writeAll(dest.fd, chunk, task.offset, `chunk ${task.index}`);
  return { reply: refused ? { refused } : { done: true }, transfer: back };
}

function writeAll(fd: number, buf: Buffer, position: number, what: string): RestoreWriteRefusal | null {
  try {
    for (let done = 0; done < buf.length; ) done += writeSync(fd, buf, done, buf.length - done, position + done);
    return null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { code: 'WRITE_FAILED', message: `writing ${what} failed: ${e.code ? `${e.code}: ` : ''}${e.message}` };
  }
}
