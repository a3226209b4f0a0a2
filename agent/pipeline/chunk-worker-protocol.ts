/**
 * Messages between the pipeline and its chunk workers. The bytes stay where they are: the
 * pipeline reads into SharedArrayBuffers it reuses, and a task names ranges of them, so nothing
 * is copied or moved per chunk and no fresh megabytes pile up for the garbage collector. (A plain
 * ArrayBuffer, as tests pass, is copied by postMessage; a compress task's output must be shared.)
 */

/** A byte range of a task's buffer. */
export interface BufferRange {
  offset: number;
  length: number;
}

export type TaskBuffer = SharedArrayBuffer | ArrayBuffer;

export interface HashRequest {
  op: 'hash';
  /** One or more consecutive chunks read in one go. */
  buffer: TaskBuffer;
  chunks: BufferRange[];
}

export interface HashReply {
  op: 'hash';
  /** Per chunk, the SHA-256 as 64 lowercase hex digits, or null for an all-zero chunk (never hashed). */
  digests: (string | null)[];
}

export interface CompressRequest {
  op: 'compress';
  buffer: TaskBuffer;
  chunks: BufferRange[];
  level: number;
  /** Where the frames go: chunk k's frame is written at the start of outRanges[k]. */
  out: SharedArrayBuffer;
  /** One per chunk, each at least zstdCompressBound(chunk length) long. */
  outRanges: BufferRange[];
}

export interface CompressReply {
  op: 'compress';
  /** Per chunk, the length of its zstd frame, which starts at its outRanges offset. */
  lengths: number[];
}

export type ChunkTask = HashRequest | CompressRequest;
export type ChunkTaskReply = HashReply | CompressReply;
