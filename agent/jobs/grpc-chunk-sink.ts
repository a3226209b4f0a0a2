import type { ChunkSink, ChunkUpload } from '../pipeline/index.js';
import type { ChunkUpload as UploadStream, DataClient } from '../data-client.js';

/**
 * Chunks of a job sent and not yet stored by the hub. The pipeline reuses a chunk's memory once
 * it is on the wire; this bounds what the hub holds of the job instead: as many as the pipeline's
 * slots bounded before they came back at send, so the hub's memory is what it was.
 */
export const MAX_UNACKED_CHUNKS = 8;

/**
 * The pipeline's sink over the hub's DataService: a job's chunks go out over several upload
 * streams (DataClient.openUploads), each chunk on the stream with the fewest unacknowledged.
 */
export class GrpcChunkSink implements ChunkSink {
  private streams: UploadStream[] | null = null;
  private unacked = 0;
  private readonly waiting: (() => void)[] = [];
  /** Store time of streams already closed (hubBusyMs). */
  private closedStoreBusyMs = 0;
  /** The streams being opened, shared by the uploads that start together. */
  private opening: Promise<UploadStream[]> | null = null;
  private cancelled = false;

  constructor(
    private readonly data: DataClient,
    private readonly jobId: string,
  ) {}

  async missing(digests: readonly string[]): Promise<string[]> {
    const answer = await this.data.missingChunks(this.jobId, Buffer.from(digests.join(''), 'hex'));
    const out: string[] = [];
    for (let i = 0; i < answer.length; i += 32) out.push(answer.subarray(i, i + 32).toString('hex'));
    return out;
  }

  async upload(chunk: ChunkUpload, signal: AbortSignal, release?: () => void): Promise<void> {
    if (!this.streams) {
      this.opening ??= this.data.openUploads(this.jobId).then((streams) => {
        this.streams = streams;
        // A cancelled job must not wait for chunks already on the wire.
        signal.addEventListener('abort', () => this.cancel(), { once: true });
        if (this.cancelled || signal.aborted) this.cancel();
        return streams;
      });
      await this.opening;
    }
    await this.takeUnacked(signal);
    try {
      if (!this.streams) throw new Error('the upload was cancelled');
      const stream = this.streams.reduce((a, b) => (b.pending < a.pending ? b : a));
      await stream.send(Buffer.from(chunk.digest, 'hex'), chunk.zstd, chunk.plaintextLength, chunk.headroom, release);
    } finally {
      this.unacked -= 1;
      this.waiting.shift()?.();
    }
  }

  /** Waits for one of the MAX_UNACKED_CHUNKS places; rejects when the job is cancelled meanwhile. */
  private takeUnacked(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(new Error('the upload was cancelled'));
    if (this.unacked < MAX_UNACKED_CHUNKS) {
      this.unacked += 1;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiting.indexOf(take);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error('the upload was cancelled'));
      };
      // Called by a finishing upload, which hands its place over.
      const take = () => {
        signal.removeEventListener('abort', onAbort);
        this.unacked += 1;
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(take);
    });
  }

  /** The hub's store time for this job's chunks (each stream's own, summed): the "hub write" stage. */
  hubBusyMs(): number {
    return this.closedStoreBusyMs + (this.streams ?? []).reduce((a, s) => a + s.storeBusyMs, 0);
  }

  async close(): Promise<void> {
    const streams = this.streams ?? (this.opening ? await this.opening.catch(() => []) : []);
    this.streams = null;
    this.opening = null;
    try {
      await Promise.all(streams.map((s) => s.close()));
    } finally {
      this.closedStoreBusyMs += streams.reduce((a, s) => a + s.storeBusyMs, 0);
    }
  }

  cancel(): void {
    this.cancelled = true;
    for (const s of this.streams ?? []) s.cancel();
    this.streams = null;
  }
}
