import type { HandledTask } from '../../shared/workers/worker-protocol.js';
import { readChunkSync, type ReadCheck } from './chunk-reads.js';
import { storeUploadSync, type ChunkUploadTarget, type StoredChunk } from './chunk-upload.js';
import { RepositoryError, type RepositoryErrorCode, type RepositoryErrorDetails } from './errors.js';

/**
 * Messages between the chunk store and its worker threads, and the worker's answer to one. An
 * upload's payload travels in the transfer list when the store may move it (its memory is then
 * detached on the sending side).
 */
export interface StoreChunkTask extends ChunkUploadTarget {
  kind: 'store';
  /** The uploaded bytes (zstd frames, or the plaintext for encoding 'none'). */
  payload: Uint8Array;
}

export type StoreChunkReply =
  | { stored: StoredChunk; payload: ArrayBuffer }
  /** The upload was refused (DATA_LOSS) or the store failed on purpose: the RepositoryError, as data. */
  | { refused: RepositoryErrorData; payload: ArrayBuffer };

/**
 * Read the chunk file at `path`, checked as `check` says; its plaintext goes into `into` from
 * `offset` on. `into` is moved to the worker and back with the answer: a copy out of a
 * SharedArrayBuffer (what grpc-js makes of every message it sends) took 3-4 times as long as one
 * out of an ArrayBuffer.
 */
export interface ReadChunkTask {
  kind: 'read';
  digest: string;
  path: string;
  into: ArrayBuffer;
  offset: number;
  check: ReadCheck;
}

export type ReadChunkReply =
  | { plaintextLength: number; into: ArrayBuffer }
  /** CHUNK_MISSING or DATA_LOSS: the RepositoryError, as data. */
  | { refused: RepositoryErrorData; into: ArrayBuffer };

export type ChunkStoreTask = StoreChunkTask | ReadChunkTask;
export type ChunkStoreReply = StoreChunkReply | ReadChunkReply;

/** A RepositoryError as it crosses threads (structured clone keeps an Error's message, not its code or details). */
export interface RepositoryErrorData {
  code: RepositoryErrorCode;
  message: string;
  details: RepositoryErrorDetails[RepositoryErrorCode];
  /** The cause's message (e.g. libzstd's), if there was one. */
  cause?: string;
}

export function repositoryErrorToData(err: RepositoryError): RepositoryErrorData {
  const data: RepositoryErrorData = { code: err.code, message: err.message, details: err.details };
  if (err.cause !== undefined) data.cause = err.cause instanceof Error ? err.cause.message : String(err.cause);
  return data;
}

/** The same error again: code, message and details unchanged; the cause comes back as an Error with its message. */
export function repositoryErrorFromData(data: RepositoryErrorData): RepositoryError {
  return new RepositoryError(data.code, data.message, data.details, data.cause === undefined ? undefined : { cause: new Error(data.cause) });
}

/**
 * What a worker does with a task: storeUploadSync or readChunkSync, a refusal (RepositoryError)
 * answered as data. Anything else thrown (an fs error) propagates: the pool fails the task
 * WORKER_TASK_FAILED.
 */
export function answerChunkStoreTask(task: ChunkStoreTask): HandledTask<ChunkStoreReply> {
  return task.kind === 'store' ? answerStore(task) : answerRead(task);
}

function answerRead(task: ReadChunkTask): HandledTask<ReadChunkReply> {
  const { into } = task;
  try {
    return { reply: { plaintextLength: readChunkSync(task.digest, task.path, Buffer.from(into, task.offset), task.check), into }, transfer: [into] };
  } catch (err) {
    if (!(err instanceof RepositoryError)) throw err;
    return { reply: { refused: repositoryErrorToData(err), into }, transfer: [into] };
  }
}

function answerStore(task: StoreChunkTask): HandledTask<StoreChunkReply> {
  const { payload, kind: _kind, ...target } = task;
  // The payload's memory goes back with the answer: dropped here, it would wait for this thread's rare GCs.
  const back = payload.buffer as ArrayBuffer;
  try {
    const stored = storeUploadSync(target, Buffer.from(back, payload.byteOffset, payload.byteLength));
    return { reply: { stored, payload: back }, transfer: [back] };
  } catch (err) {
    if (!(err instanceof RepositoryError)) throw err;
    return { reply: { refused: repositoryErrorToData(err), payload: back }, transfer: [back] };
  }
}
