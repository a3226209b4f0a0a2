import type { ChunkSink, ChunkUpload } from '../pipeline/index.js';
import type { ChunkUpload as UploadStream, DataClient } from '../data-client.js';

/** The pipeline's sink over the hub's DataService: one upload stream per job. */
export class GrpcChunkSink implements ChunkSink {
  private stream: UploadStream | null = null;

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
    if (!this.stream) {
      this.stream = this.data.openUpload(this.jobId);
      // A cancelled job must not wait for chunks already on the wire.
      signal.addEventListener('abort', () => this.cancel(), { once: true });
    }
    await this.stream.send(Buffer.from(chunk.digest, 'hex'), chunk.zstd, chunk.plaintextLength);
  }

  async close(): Promise<void> {
    await this.stream?.close();
    this.stream = null;
  }

  cancel(): void {
    this.stream?.cancel();
    this.stream = null;
  }
}
