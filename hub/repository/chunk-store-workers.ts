import { ownsItsMemory } from '../../shared/workers/movable-memory.js';
import { WorkerPool } from '../../shared/workers/worker-pool.js';
import { repositoryErrorFromData, type ChunkStoreReply, type ChunkStoreTask, type ReadChunkReply, type StoreChunkReply } from './chunk-store-worker-protocol.js';
import type { ReadCheck } from './chunk-reads.js';
import type { ChunkUploadTarget, StoredChunk } from './chunk-upload.js';

export interface ChunkStoreWorkersOptions {
  /** Threads; default 2. */
  size?: number;
  /** An idle thread exits after this long, so a hub between backups holds no threads. Default 10 s. */
  idleTimeoutMs?: number;
  /** The worker's compiled module; only tests point this elsewhere (e.g. at a worker that crashes). */
  script?: URL;
}

/**
 * At most this many bytes of a payload's ArrayBuffer may lie outside the payload for the memory to
 * be moved rather than copied: grpc-js gives each received message a buffer of its own, and the
 * rest of an UploadChunksRequest (framing, job id, digest) is ~90 bytes.
 */
const MOVABLE_SLACK_BYTES = 4096;

/**
 * The hub's chunk store threads: each stores an uploaded chunk whole (check + durable write, see
 * storeUploadSync) or reads one whole (read, decode, SHA-256, see readChunkSync), so the main
 * thread, busy with every agent's gRPC and TLS, makes one round trip per chunk. The owner closes
 * it (Hub.stop).
 *
 * Errors: a refusal comes back as the same RepositoryError (code, message, details); a thread that
 * dies fails only its chunk, with WorkerPoolError WORKER_CRASHED, and the next chunk gets a fresh
 * thread; an fs error in the worker comes back as WORKER_TASK_FAILED with its message.
 */
export class ChunkStoreWorkers {
  private readonly pool: WorkerPool<ChunkStoreTask, ChunkStoreReply>;

  constructor(opts: ChunkStoreWorkersOptions = {}) {
    this.pool = new WorkerPool({
      script: opts.script ?? new URL('./chunk-store-worker.js', import.meta.url),
      size: opts.size ?? 2,
      idleTimeoutMs: opts.idleTimeoutMs,
    });
  }

  get size(): number {
    return this.pool.size;
  }

  get threadCount(): number {
    return this.pool.threadCount;
  }

  /** Starts every thread not yet running; idle ones exit after the idle timeout as usual. */
  warm(): void {
    this.pool.warm();
  }

  /**
   * Stores `payload` under `target` on a worker thread. With `transferPayload`, the caller gives
   * up the payload and every other view of its memory: if that memory is the payload's own (not
   * Node's shared pool, nothing much else in it), it is moved to the worker and detached here;
   * otherwise, and always without `transferPayload`, the payload is copied.
   */
  async store(target: ChunkUploadTarget, payload: Buffer, transferPayload: boolean): Promise<StoredChunk> {
    const bytes = transferPayload && ownsItsMemory(payload, MOVABLE_SLACK_BYTES) ? payload : new Uint8Array(payload);
    const reply = (await this.pool.run({ kind: 'store', ...target, payload: bytes }, [bytes.buffer as ArrayBuffer])).reply as StoreChunkReply;
    if ('refused' in reply) throw repositoryErrorFromData(reply.refused);
    return reply.stored;
  }

  /**
   * Reads the chunk file at `path` on a worker thread, its verified plaintext written into `into`
   * from `offset` on (at least one chunk of room). `into` is moved to the thread (detached here)
   * and comes back as `buffer`, the same memory in a new ArrayBuffer. Throws the same
   * RepositoryError as readChunkSync (CHUNK_MISSING, DATA_LOSS); `into` is then not returned.
   */
  async read(digest: string, path: string, into: ArrayBuffer, offset: number, check: ReadCheck): Promise<{ plaintextLength: number; buffer: ArrayBuffer }> {
    const reply = (await this.pool.run({ kind: 'read', digest, path, into, offset, check }, [into])).reply as ReadChunkReply;
    if ('refused' in reply) throw repositoryErrorFromData(reply.refused);
    return { plaintextLength: reply.plaintextLength, buffer: reply.into };
  }

  /** Terminates every thread; chunks being stored fail with ABORTED. Idempotent. */
  close(): Promise<void> {
    return this.pool.close();
  }
}
