import { ownsItsMemory } from '../../shared/workers/movable-memory.js';
import { WorkerPool } from '../../shared/workers/worker-pool.js';
import type { RestoreWriteReply, RestoreWriteTask } from './restore-writer-protocol.js';
import { RestoreError } from './restore-error.js';

/**
 * At most this many bytes of a chunk's ArrayBuffer may lie outside it for the memory to be moved
 * rather than copied: grpc-js gives each received message a buffer of its own, and the rest of a
 * DownloadChunksResponse (framing, digest) is ~40 bytes.
 */
const MOVABLE_SLACK_BYTES = 4096;

/**
 * Verifies, hashes and writes one destination's chunks on a thread of its own, in the order they
 * are given. Measured in the bench's restore, the image's SHA-256 (zeros included) took a quarter
 * of the agent's event loop, which also receives every chunk from the hub. Each call resolves when
 * its bytes are written (or, for finish, with the image's SHA-256); a refusal rejects with
 * RestoreError (DATA_LOSS, WRITE_FAILED).
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

  /** The caller gives up `data` (and its message's other fields): its memory may be moved to the thread. */
  async chunk(index: number, offset: number, digest: string, data: Buffer): Promise<void> {
    const movable = ownsItsMemory(data, MOVABLE_SLACK_BYTES);
    const view = movable ? data : new Uint8Array(data);
    await this.run(
      { kind: 'chunk', index, offset, digest, data: view.buffer as ArrayBuffer, byteOffset: view.byteOffset, length: view.byteLength },
      [view.buffer as ArrayBuffer],
    );
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
