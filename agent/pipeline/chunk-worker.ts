/**
 * The chunk worker thread: zero detection, SHA-256 and zstd compression, off the main thread so
 * every core works. Stateless apart from libzstd's per-thread context; a task that throws is
 * answered with an error and the worker carries on.
 */
import { createHash } from 'node:crypto';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { zstdCompress, zstdCompressBound } from '../../shared/chunk/zstd.js';
import { serveTasks, type HandledTask } from '../../shared/workers/worker-protocol.js';
import type { ChunkTask, ChunkTaskReply, CompressReply, CompressRequest, HashReply, HashRequest } from './chunk-worker-protocol.js';

// A task that throws is reported to its caller, which fails the backup with WORKER_TASK_FAILED.
serveTasks<ChunkTask, ChunkTaskReply>('chunk-worker', (task): HandledTask<ChunkTaskReply> => {
  if (task.op === 'hash') {
    const reply = hash(task);
    return { reply, transfer: [reply.buffer] };
  }
  const reply = compress(task);
  return { reply, transfer: [...reply.frames, reply.buffer] };
});

function hash(task: HashRequest): HashReply {
  const digests = task.chunks.map((c) => {
    const bytes = new Uint8Array(task.buffer, c.offset, c.length);
    return isAllZero(bytes) ? null : createHash('sha256').update(bytes).digest('hex');
  });
  return { op: 'hash', buffer: task.buffer, digests };
}

/** The thread's compression output buffer, reused: only the exact frame is allocated per chunk. */
let scratch: Buffer | undefined;

function compress(task: CompressRequest): CompressReply {
  scratch ??= Buffer.allocUnsafe(zstdCompressBound(CHUNK_SIZE));
  const frames = task.chunks.map((c) => {
    const frame = zstdCompress(new Uint8Array(task.buffer, c.offset, c.length), task.level, scratch);
    // Copied out so the buffer handed back is exactly the frame (and the scratch stays here).
    const exact = Buffer.allocUnsafeSlow(frame.length);
    frame.copy(exact);
    return exact.buffer as ArrayBuffer;
  });
  return { op: 'compress', frames, buffer: task.buffer };
}

const ZEROS = new Uint8Array(64 * 1024);

/** memcmp against a zero block, 64 KiB at a time: several GB/s, far cheaper than hashing. */
function isAllZero(bytes: Uint8Array): boolean {
  for (let off = 0; off < bytes.length; off += ZEROS.length) {
    const n = Math.min(ZEROS.length, bytes.length - off);
    if (Buffer.compare(bytes.subarray(off, off + n), n === ZEROS.length ? ZEROS : ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}
