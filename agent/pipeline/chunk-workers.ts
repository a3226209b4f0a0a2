import type { BufferRange, ChunkTask, ChunkTaskReply, CompressReply, HashReply } from './chunk-worker-protocol.js';
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

  get threadCount(): number {
    return this.pool.threadCount;
  }

  get mode(): 'compiled' | 'source' {
    return this.pool.mode;
  }

  /**
   * Zero check and SHA-256 of each chunk in `buffer`. The buffer is transferred to the worker (it
   * is detached here) and comes back in the reply.
   */
  async hash(buffer: ArrayBuffer, chunks: BufferRange[], signal?: AbortSignal): Promise<TaskOutcome<HashReply>> {
    const out = await this.pool.run({ op: 'hash', buffer, chunks }, [buffer], signal).catch(rethrowAsPipelineError);
    return expectReply(out, 'hash');
  }

  /** One zstd frame per chunk. The buffer is transferred to the worker and comes back in the reply. */
  async compress(buffer: ArrayBuffer, chunks: BufferRange[], level: number, signal?: AbortSignal): Promise<TaskOutcome<CompressReply>> {
    const out = await this.pool.run({ op: 'compress', buffer, chunks, level }, [buffer], signal).catch(rethrowAsPipelineError);
    return expectReply(out, 'compress');
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
