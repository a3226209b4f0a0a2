import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { ownsItsMemory } from '../../shared/workers/movable-memory.js';
import { WorkerPool } from '../../shared/workers/worker-pool.js';
import type { RestoreWriteReply, RestoreWriteTask } from './restore-writer-protocol.js';
import { RestoreError } from './restore-error.js';

/** More than a DownloadChunksResponse's bytes besides its data (framing, tags, lengths, the digest). */
const MESSAGE_OVERHEAD_BYTES = 256;

/**
 * Verifies, hashes and writes one destination's chunks on a thread of its own, in the order they
 * are given. Measured in the bench's restore, the image's SHA-256 (zeros included) took a quarter
 * of the agent's event loop, which also receives every chunk from the hub. Each call resolves when
 * its bytes are written (or, for finish, with the image's SHA-256); a refusal rejects with
 * RestoreError (DATA_LOSS, WRITE_FAILED).
 *
 * A chunk's memory moves to the thread, and back when written, to be freed here at once instead
 * of at the thread's next collection. Measured in the restore probe, against copying each chunk
 * into one of a few reused SharedArrayBuffers: the copy cost this thread 2-3.6 ms per 4 MiB chunk
 * in the restore (0.6-0.9 s of a 1 GiB restore), and moving took its restores from 8.9-9.1 s to
 * 7.6-8.7 s with the agent's peak RSS no higher (179-232 MiB against 205-235).
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

  private constructor() {}

  async zeros(offset: number, length: number): Promise<void> {
    await this.run({ kind: 'zeros', offset, length });
  }

  /**
   * Takes `data` (at most one chunk): its ArrayBuffer moves to the thread, so neither `data` nor any
   * other view of that buffer (grpc-js's message holds the digest in it too) may be used again.
   * A buffer `data` does not fill nearly alone (Node's pool, a read buffer shared with other
   * messages) is copied into one of its own first.
   */
  async chunk(index: number, offset: number, digest: string, data: Buffer): Promise<void> {
    if (data.length > CHUNK_SIZE) throw new RestoreError('DATA_LOSS', `chunk ${index} (${digest}) has ${data.length} bytes, more than a chunk`);
    let own = data;
    if (!ownsItsMemory(data, MESSAGE_OVERHEAD_BYTES)) {
      own = Buffer.allocUnsafeSlow(data.length);
      data.copy(own);
    }
    const buffer = own.buffer as ArrayBuffer;
    await this.run({ kind: 'chunk', index, offset, digest, data: buffer, byteOffset: own.byteOffset, length: own.length }, [buffer]);
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

  private async run(task: RestoreWriteTask, transfer: ArrayBuffer[] = []): Promise<RestoreWriteReply> {
    const { reply } = await this.pool.run(task, transfer);
    if ('refused' in reply) throw new RestoreError(reply.refused.code, reply.refused.message);
    return reply;
  }
}
