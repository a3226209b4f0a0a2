import type { ChunkSink, ChunkUpload } from '../pipeline/index.js';
import type { ChunkUpload as UploadStream, DataClient } from '../data-client.js';

/**
 * The pipeline's sink over the hub's DataService: a job's chunks go out over several upload
 * streams (DataClient.openUploads), each chunk on the stream with the fewest unacknowledged.
 */
export class GrpcChunkSink implements ChunkSink {
  private streams: UploadStream[] | null = null;
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

  async upload(chunk: ChunkUpload, signal: AbortSignal): Promise<void> {
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
    if (!this.streams) throw new Error('the upload was cancelled');
    const stream = this.streams.reduce((a, b) => (b.pending < a.pending ? b : a));
    await stream.send(Buffer.from(chunk.digest, 'hex'), chunk.zstd, chunk.plaintextLength, chunk.headroom);
  }

  /**
   * The hub's store time for this job's chunks (each stream's own, summed): the "hub write" stage.
   * The pipeline samples it while it runs, before close().
   */
  hubBusyMs(): number {
    return (this.streams ?? []).reduce((a, s) => a + s.storeBusyMs, 0);
  }

  async close(): Promise<void> {
    const streams = this.streams ?? (this.opening ? await this.opening.catch(() => []) : []);
    this.streams = null;
    this.opening = null;
    await Promise.all(streams.map((s) => s.close()));
  }

  cancel(): void {
    this.cancelled = true;
    for (const s of this.streams ?? []) s.cancel();
    this.streams = null;
  }
}
