import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { WorkerPool } from '../../shared/workers/worker-pool.js';
import type { RestoreWriteReply, RestoreWriteTask } from './restore-writer-protocol.js';
import { RestoreError } from './restore-error.js';

/**
 * Verifies, hashes and writes one destination's chunks on a thread of its own, in the order they
 * are given. Measured in the bench's restore, the image's SHA-256 (zeros included) took a quarter
 * of the agent's event loop, which also receives every chunk from the hub. Each call resolves when
 * its bytes are written (or, for finish, with the image's SHA-256); a refusal rejects with
 * RestoreError (DATA_LOSS, WRITE_FAILED).
 *
 * A chunk is copied (0.2 ms for 4 MiB) into one of a few reused SharedArrayBuffers the thread
 * reads. Moving grpc-js's message buffer to the thread and back instead makes every chunk count
 * as new memory on this thread a second time, which V8 answers with full collections (the hub's
 * restore reads, which do move their buffers, cost it 24-56 full GCs per restore of 1 GiB).
 */
export class RestoreWriter {
  // One thread, so tasks run in the order they are sent; it never idles out mid-restore.
  private readonly pool = new WorkerPool<RestoreWriteTask, RestoreWriteReply>({
    script: new URL('./restore-writer-worker.js', import.meta.url),
    size: 1,
    idleTimeoutMs: 2 ** 31 - 1,
  });

  static async open(fd: number, fresh: boolean): Promise<RestoreWriter> {
    const w = new RestoreWriter();
    try {
      await w.run({ kind: 'open', fd, fresh });
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  /** Chunk buffers not in use by a task. */
  private readonly free: Buffer[] = [];

  private constructor() {}

  async zeros(offset: number, length: number): Promise<void> {
    await this.run({ kind: 'zeros', offset, length });
  }

  /** `data` (at most one chunk) is copied before this returns a promise: the caller may reuse it at once. */
  async chunk(index: number, offset: number, digest: string, data: Buffer): Promise<void> {
    if (data.length > CHUNK_SIZE) throw new RestoreError('DATA_LOSS', `chunk ${index} (${digest}) has ${data.length} bytes, more than a chunk`);
    const slot = this.free.pop() ?? Buffer.from(new SharedArrayBuffer(CHUNK_SIZE));
    data.copy(slot);
    try {
      await this.run({ kind: 'chunk', index, offset, digest, data: slot.buffer as SharedArrayBuffer, length: data.length });
    } catch (err) {
      // A refusal means the thread is done with the buffer; after anything else it may not be.
      if (err instanceof RestoreError) this.free.push(slot);
      throw err;
    }
    this.free.push(slot);
  }

  async finish(): Promise<string> {
    const reply = await this.run({ kind: 'finish' });
    if (!('sha256' in reply)) throw new Error('restore writer: finish answered without a digest');
    return reply.sha256;
  }

  /** Ends the thread; a task still running fails with ABORTED. Idempotent. */
  close(): Promise<void> {
    return this.pool.close();
  }

  private async run(task: RestoreWriteTask): Promise<RestoreWriteReply> {
    const { reply } = await this.pool.run(task, []);
    if ('refused' in reply) throw new RestoreError(reply.refused.code, reply.refused.message);
    return reply;
  }
}
