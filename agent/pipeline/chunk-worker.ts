/**
 * The chunk worker thread: zero detection, SHA-256 and zstd compression, off the main thread so
 * every core works. Stateless apart from libzstd's per-thread context; a task that throws is
 * answered with an error and the worker carries on.
 */
import { createHash } from 'node:crypto';
import { zstdCompress, zstdCompressBound } from '../../shared/chunk/zstd.js';
import { serveTasks, type HandledTask } from '../../shared/workers/worker-protocol.js';
import type { ChunkTask, ChunkTaskReply, CompressReply, CompressRequest, HashReply, HashRequest } from './chunk-worker-protocol.js';

// A task that throws is reported to its caller, which fails the backup with WORKER_TASK_FAILED.
// Nothing is moved: the bytes are in the pipeline's shared buffers.
serveTasks<ChunkTask, ChunkTaskReply>('chunk-worker', (task): HandledTask<ChunkTaskReply> => {
  if (task.op === 'hash') return { reply: hash(task), transfer: [] };
  return { reply: compress(task), transfer: [] };
});

function hash(task: HashRequest): HashReply {
  const digests = task.chunks.map((c) => {
    const bytes = new Uint8Array(task.buffer, c.offset, c.length);
    return isAllZero(bytes) ? null : createHash('sha256').update(bytes).digest('hex');
  });
  return { op: 'hash', digests };
}

/** Each frame is written straight into its range of the shared output buffer. */
function compress(task: CompressRequest): CompressReply {
  if (task.outRanges.length !== task.chunks.length) throw new Error(`${task.chunks.length} chunks but ${task.outRanges.length} output ranges`);
  const out = Buffer.from(task.out);
  const lengths = task.chunks.map((c, k) => {
    const r = task.outRanges[k]!;
    const bound = zstdCompressBound(c.length);
    if (r.offset < 0 || r.length < bound || r.offset + r.length > out.length) {
      throw new Error(`output range ${k} [${r.offset}, +${r.length}) cannot hold a frame of up to ${bound} bytes in a buffer of ${out.length}`);
    }
    return zstdCompress(new Uint8Array(task.buffer, c.offset, c.length), task.level, out.subarray(r.offset, r.offset + r.length)).length;
  });
  return { op: 'compress', lengths };
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
