import type { BusyMeter } from '../../shared/busy-meter.js';
import type { ChunkSink } from './chunk-sink.js';
import { abortedError, messageOf, PipelineError } from './pipeline-error.js';

/**
 * - `upload`: the hub lacks the chunk; the caller compresses and uploads it, then calls uploaded().
 * - `present`: the hub has it (and touched it), nothing to send.
 * - `duplicate`: an earlier chunk of this backup with the same digest is being looked up or
 *   uploaded right now; that one takes care of it.
 */
export type DedupeVerdict = 'upload' | 'present' | 'duplicate';

interface Question {
  digest: string;
  resolve: (v: DedupeVerdict) => void;
  reject: (err: Error) => void;
}

/**
 * Asks the sink which chunks the hub lacks, in batches. Digests wait in a queue while the sink is
 * busy with earlier calls (at most `maxCalls` outstanding) and go together in the next call, so
 * under load batches grow towards `maxBatch` and an idle pipeline asks at once: no timer, no wait.
 *
 * Repeats within the backup are settled here without the hub: a digest already on its way (asked
 * about, or being uploaded) is a `duplicate`. Only digests in flight are remembered, so memory
 * stays bounded by the pipeline's in-flight chunks; a repeat seen later asks the hub, which by then
 * has the chunk.
 */
export class ChunkDeduper {
  private readonly inFlight = new Set<string>();
  private queue: Question[] = [];
  private calls = 0;

  constructor(
    private readonly sink: ChunkSink,
    private readonly signal: AbortSignal,
    private readonly network: BusyMeter,
    private readonly maxBatch: number,
    private readonly maxCalls = 2,
  ) {}

  claim(digest: string): Promise<DedupeVerdict> {
    if (this.inFlight.has(digest)) return Promise.resolve('duplicate');
    this.inFlight.add(digest);
    return new Promise<DedupeVerdict>((resolve, reject) => {
      this.queue.push({ digest, resolve, reject });
      // A microtask later, so every chunk of one hash result joins the same call.
      if (this.queue.length === 1) queueMicrotask(() => this.pump());
    });
  }

  /** The chunk the caller was told to upload is stored: later repeats ask the hub again. */
  uploaded(digest: string): void {
    this.inFlight.delete(digest);
  }

  private pump(): void {
    if (this.signal.aborted) {
      for (const q of this.queue.splice(0)) q.reject(abortedError(this.signal));
      return;
    }
    while (this.queue.length > 0 && this.calls < this.maxCalls) {
      void this.ask(this.queue.splice(0, this.maxBatch));
    }
  }

  private async ask(batch: Question[]): Promise<void> {
    this.calls++;
    try {
      const asked = new Set(batch.map((q) => q.digest));
      let missing: string[];
      try {
        missing = await this.network.time(() => this.sink.missing([...asked], this.signal));
      } catch (err) {
        throw new PipelineError('SINK_FAILED', `asking the hub which of ${batch.length} chunks it lacks failed: ${messageOf(err)}`, { operation: 'missing' }, { cause: err });
      }
      const lacking = new Set<string>();
      for (const d of missing) {
        if (!asked.has(d)) {
          throw new PipelineError('SINK_PROTOCOL', `the hub reported chunk ${String(d).slice(0, 80)} missing, which was not asked about`, { operation: 'missing', digest: String(d) });
        }
        lacking.add(d);
      }
      for (const q of batch) {
        if (lacking.has(q.digest)) q.resolve('upload');
        else {
          this.inFlight.delete(q.digest);
          q.resolve('present');
        }
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const q of batch) q.reject(e);
    } finally {
      this.calls--;
      this.pump();
    }
  }
}
