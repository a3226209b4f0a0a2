/**
 * Messages between the pipeline and its chunk workers. Plaintext and compressed bytes travel as
 * transferred ArrayBuffers (moved, not copied); each side owns a buffer only while it holds it.
 */

/** A byte range of a task's buffer. */
export interface BufferRange {
  offset: number;
  length: number;
}

export interface HashRequest {
  op: 'hash';
  /** One or more consecutive chunks read in one go; transferred to the worker and back. */
  buffer: ArrayBuffer;
  chunks: BufferRange[];
}

export interface HashReply {
  op: 'hash';
  /** The same buffer, transferred back so its chunks can be compressed if the hub lacks them. */
  buffer: ArrayBuffer;
  /** Per chunk, the SHA-256 as 64 lowercase hex digits, or null for an all-zero chunk (never hashed). */
  digests: (string | null)[];
}

export interface CompressRequest {
  op: 'compress';
  /** Transferred to the worker and back, so the pipeline can read into it again. */
  buffer: ArrayBuffer;
  chunks: BufferRange[];
  level: number;
}

export interface CompressReply {
  op: 'compress';
  /** Per chunk, one zstd frame in an ArrayBuffer of exactly its size (so memory is what it says). */
  frames: ArrayBuffer[];
  /** The request's buffer, given back: dropped in the worker, it would wait for the worker's rare GCs. */
  buffer: ArrayBuffer;
}

export type ChunkTask = HashRequest | CompressRequest;
export type ChunkTaskReply = HashReply | CompressReply;
