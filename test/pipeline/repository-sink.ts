import { BusyMeter } from '../../shared/busy-meter.js';
import type { ChunkSink, ChunkUpload } from '../../agent/pipeline/chunk-sink.js';
import type { Repository } from '../../hub/repository/index.js';

/**
 * A ChunkSink backed by a real hub Repository in the same process: what the data plane will do,
 * minus gRPC. The repository checks every upload (decodes it and compares its SHA-256) on this
 * thread, as the hub would on its own.
 */
export class RepositorySink implements ChunkSink {
  private readonly hub = new BusyMeter();
  /** Calls made, for tests. */
  readonly calls = { missing: 0, digestsAsked: 0, uploads: 0, created: 0 };

  constructor(readonly repo: Repository) {}

  async missing(digests: readonly string[], signal: AbortSignal): Promise<string[]> {
    signal.throwIfAborted();
    this.calls.missing++;
    this.calls.digestsAsked += digests.length;
    return this.hub.time(() => this.repo.missingChunks(digests, signal));
  }

  async upload(chunk: ChunkUpload, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    this.calls.uploads++;
    const r = await this.hub.time(() => this.repo.putChunk(chunk.digest, chunk.zstd, 'zstd'));
    if (r.created) this.calls.created++;
  }

  hubBusyMs(): number {
    return this.hub.busyMs();
  }
}
