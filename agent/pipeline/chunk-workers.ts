import type { BufferRange, ChunkTask, ChunkTaskReply, CompressReply, HashReply, TaskBuffer } from './chunk-worker-protocol.js';
import { WorkerPool, type TaskOutcome } from '../../shared/workers/worker-pool.js';
import { WorkerPoolError } from '../../shared/workers/worker-pool-error.js';
import { PipelineError } from './pipeline-error.js';

export interface ChunkWorkerPoolOptions {
  /** Threads; default os.availableParallelism(). */
  size?: number;
  /** An idle thread exits after this long. Default 10 s. */
  idleTimeoutMs?: number;
  /** The worker's compiled module; only tests point this elsewhere (e.g. at a worker that crashes). */
  script?: URL;
}

/**
 * The pool of threads that hash and compress chunks. One pool can serve several pipelines at
 * once (the agent's backups share the cores); a pipeline given none makes its own and closes it.
 */
export class ChunkWorkerPool {
  private readonly pool: WorkerPool<ChunkTask, ChunkTaskReply>;

  constructor(opts: ChunkWorkerPoolOptions = {}) {
    try {
      this.pool = new WorkerPool({
        script: opts.script ?? new URL('./chunk-worker.js', import.meta.url),
        size: opts.size,
        idleTimeoutMs: opts.idleTimeoutMs,
      });
    } catch (err) {
      throw asPipelineError(err);
    }
  }

  get size(): number {
    return this.pool.size;
  }

  /** Starts the threads now (see WorkerPool.warm): a backup does it while its snapshot is taken. */
  warm(): void {
    this.pool.warm();
  }

  get threadCount(): number {
    return this.pool.threadCount;
  }

  get mode(): 'compiled' | 'source' {
    return this.pool.mode;
  }

  /** Zero check and SHA-256 of each chunk in `buffer` (shared with the worker, not moved). */
  async hash(buffer: TaskBuffer, chunks: BufferRange[], signal?: AbortSignal): Promise<TaskOutcome<HashReply>> {
    const out = await this.pool.run({ op: 'hash', buffer, chunks }, [], signal).catch(rethrowAsPipelineError);
    return expectReply(out, 'hash');
  }

  /**
   * One zstd frame per chunk, written into `out` at the start of each chunk's range. A cancelled
   * task rejects at once while its thread may still be writing: the caller must not reuse `out`.
   */
  async compress(buffer: TaskBuffer, chunks: BufferRange[], level: number, out: SharedArrayBuffer, outRanges: BufferRange[], signal?: AbortSignal): Promise<TaskOutcome<CompressReply>> {
    const res = await this.pool.run({ op: 'compress', buffer, chunks, level, out, outRanges }, [], signal).catch(rethrowAsPipelineError);
    return expectReply(res, 'compress');
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

function expectReply<K extends ChunkTaskReply['op']>(out: TaskOutcome<ChunkTaskReply>, op: K): TaskOutcome<Extract<ChunkTaskReply, { op: K }>> {
  if (out.reply.op !== op) {
    throw new PipelineError('WORKER_TASK_FAILED', `worker answered a ${op} task with ${out.reply.op}`, { operation: op });
  }
  return out as TaskOutcome<Extract<ChunkTaskReply, { op: K }>>;
}

/** The pool's errors become the pipeline's, code, message, details and cause unchanged. */
function asPipelineError(err: unknown): unknown {
  if (!(err instanceof WorkerPoolError)) return err;
  return new PipelineError(err.code, err.message, err.details, { cause: err.cause });
}

function rethrowAsPipelineError(err: unknown): never {
  throw asPipelineError(err);
}
