import { setMaxListeners } from 'node:events';
import { availableParallelism } from 'node:os';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { DIGEST_BYTES, DigestList } from '../../shared/chunk/digest.js';
import { CHUNK_SIZE, chunkCount, chunkLength } from '../../shared/chunk/geometry.js';
import { zstdCompressBound } from '../../shared/chunk/zstd.js';
import type { DiskView } from '../drivers/driver.js';
import { ChunkDeduper } from './chunk-dedupe.js';
import { planChunks } from './chunk-plan.js';
import type { ChunkSink } from './chunk-sink.js';
import type { BufferRange } from './chunk-worker-protocol.js';
import { ChunkWorkerPool } from './chunk-workers.js';
import { abortedError, isPipelineError, messageOf, PipelineError } from './pipeline-error.js';
import { SharedBuffers } from './shared-buffers.js';
import { Slots } from './slots.js';
import { ProgressTracker, type PipelineProgress, type TransferCounters } from './transfer-progress.js';

/** One disk to back up. */
export interface DiskInput {
  view: DiskView;
  /**
   * The parent backup's digests of this disk (the zero marker for zero chunks), or null for a
   * full backup. Used only where the view also knows its changed extents and the sizes match.
   */
  parentDigests: DigestList | null;
}

export interface BackupPipelineOptions {
  /** The snapshot's disks, backed up one after the other in this order. */
  disks: DiskInput[];
  sink: ChunkSink;
  /** Cancels the run: no new reads, work in flight is dropped, the result rejects with ABORTED. */
  signal?: AbortSignal;
  /** Called at most once per progressIntervalMs while running, and once more (done: true) at the end. */
  onProgress?: (progress: PipelineProgress) => void;
  /** Default 1000 ms. */
  progressIntervalMs?: number;
  /**
   * The memory bound: chunks (4 MiB each) held at once, from read to upload. Default 8. Peak RSS
   * grows ~6 MiB per slot (plaintext, frame, and the garbage V8 lets pile up before collecting it).
   */
  maxChunksInFlight?: number;
  /**
   * Consecutive chunks to read in one call to DiskView.read. Default 2. Each such read is hashed
   * by one worker task, so maxChunksInFlight / maxReadChunks bounds the workers kept busy.
   */
  maxReadChunks?: number;
  /** Source reads outstanding at once. Default 8. */
  readConcurrency?: number;
  /** Digests per ChunkSink.missing call. Default 256. */
  maxMissingBatch?: number;
  /** zstd level. Default DEFAULT_COMPRESSION_LEVEL. */
  compressionLevel?: number;
  /** A pool shared with other runs; it is left open. Without one the run makes its own and closes it. */
  pool?: ChunkWorkerPool;
  /** Threads of the run's own pool. Default os.availableParallelism(). */
  workers?: number;
}

export interface DiskBackupResult {
  name: string;
  sizeBytes: number;
  /** One digest per chunk in disk order, 32 zero bytes for a zero chunk: what the index takes. */
  digests: DigestList;
  counters: TransferCounters;
  /** The view's reason for reading everything although a parent was given, for the job log. */
  fullReadReason: string | null;
}

export interface BackupPipelineResult {
  disks: DiskBackupResult[];
  /** The final progress (done: true). */
  progress: PipelineProgress;
}

export interface BackupRun {
  /** Resolves when every chunk of every disk is zero, reused, or stored by the sink. */
  readonly result: Promise<BackupPipelineResult>;
  /** The progress right now (the on-demand report). */
  progress(): PipelineProgress;
}

/**
 * Backs up one target's disks: per 4 MiB chunk, as the chunk plan decides, record it as zero,
 * reuse the parent's digest, or read it; hash what was read and drop all-zero chunks (workers);
 * ask the sink which digests the hub lacks (batched); compress those (workers) and upload them.
 * Starts at once; see BackupRun.
 */
export function startBackup(options: BackupPipelineOptions): BackupRun {
  return new BackupPipelineRun(options);
}

/** startBackup(options).result */
export function runBackup(options: BackupPipelineOptions): Promise<BackupPipelineResult> {
  return startBackup(options).result;
}

/**
 * Bytes left free before each compressed frame, so the sink can put its message header in front
 * of the frame instead of copying the frame into a message of its own (ChunkUpload.headroom).
 */
export const FRAME_HEADROOM = 256;
/** zstd level 1: level 3 costs twice the CPU per chunk and gains nothing on incompressible disk data. */
export const DEFAULT_COMPRESSION_LEVEL = 1;

/** A frame's place in a frame buffer: the headroom, then room for zstd's worst case. */
const FRAME_STRIDE = FRAME_HEADROOM + zstdCompressBound(CHUNK_SIZE);

const PLAN_ZERO = 0;
const PLAN_REUSE = 1;
const PLAN_READ = 2;

/** One disk's chunk plan, compacted to a byte per chunk (a 2 TiB disk: 512 KiB). */
interface DiskPlan {
  index: number;
  view: DiskView;
  size: number;
  count: number;
  kinds: Uint8Array;
  /** The result, filled as chunks are decided; reused digests are written when planning. */
  digests: DigestList;
}

interface Settings {
  progressIntervalMs: number;
  maxChunksInFlight: number;
  maxReadChunks: number;
  readConcurrency: number;
  maxMissingBatch: number;
  compressionLevel: number;
}

class BackupPipelineRun implements BackupRun {
  readonly result: Promise<BackupPipelineResult>;
  private readonly settings: Settings;
  private readonly tracker: ProgressTracker;
  /** Aborted on the first failure (including the caller's cancel): everything stops on it. */
  private readonly stop = new AbortController();
  private readonly chunkSlots: Slots;
  private readonly readSlots: Slots;
  private readonly deduper: ChunkDeduper;
  /** Plaintext, from the read until it is hashed and compressed. */
  private readonly readBuffers: SharedBuffers;
  /** Compressed frames, from compression until the sink has them stored. */
  private readonly frameBuffers: SharedBuffers;
  private readonly tasks = new Set<Promise<void>>();
  private pool: ChunkWorkerPool | null = null;
  private failure: Error | null = null;

  constructor(private readonly options: BackupPipelineOptions) {
    this.settings = validate(options);
    const poolThreads = options.pool?.size ?? options.workers ?? availableParallelism();
    this.tracker = new ProgressTracker(
      options.disks.map((d) => ({ bytesTotal: d.view.sizeBytes, chunksTotal: chunkCount(d.view.sizeBytes) })),
      poolThreads,
      options.sink.hubBusyMs ? () => options.sink.hubBusyMs!() : null,
    );
    // Worker tasks and sink calls each listen on the stop signal while pending; there are at most
    // about two per chunk in flight, so more than that would be a leak worth Node's warning.
    setMaxListeners(2 * this.settings.maxChunksInFlight + 8, this.stop.signal);
    this.chunkSlots = new Slots(this.settings.maxChunksInFlight);
    this.readSlots = new Slots(this.settings.readConcurrency);
    const runs = Math.ceil(this.settings.maxChunksInFlight / this.settings.maxReadChunks);
    this.readBuffers = new SharedBuffers(this.settings.maxReadChunks * CHUNK_SIZE, runs + this.settings.readConcurrency);
    this.frameBuffers = new SharedBuffers(this.settings.maxReadChunks * FRAME_STRIDE, runs);
    this.deduper = new ChunkDeduper(options.sink, this.stop.signal, this.tracker.network, this.settings.maxMissingBatch);
    this.result = this.execute();
  }

  progress(): PipelineProgress {
    return this.tracker.snapshot();
  }

  private async execute(): Promise<BackupPipelineResult> {
    const { signal } = this.options;
    const onCancel = () => this.fail(abortedError(signal!));
    if (signal?.aborted) onCancel();
    else signal?.addEventListener('abort', onCancel, { once: true });
    const timer = setInterval(() => this.report(), this.settings.progressIntervalMs);
    timer.unref();
    let plans: DiskPlan[] = [];
    try {
      if (!this.failure) {
        try {
          this.pool = this.options.pool ?? new ChunkWorkerPool({ size: this.options.workers });
          plans = await this.planDisks();
          await this.readDisks(plans);
        } catch (err) {
          this.fail(err);
        }
      }
      // Nothing of this run may still be running when its promise settles.
      while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    } finally {
      clearInterval(timer);
      signal?.removeEventListener('abort', onCancel);
    }
    if (this.pool && !this.options.pool) {
      try {
        await this.pool.close();
      } catch (err) {
        this.fail(err);
      }
    }
    this.tracker.finish();
    this.report();
    if (this.failure) throw this.failure;
    return {
      disks: plans.map((p) => ({
        name: p.view.name,
        sizeBytes: p.size,
        digests: p.digests,
        counters: { ...this.tracker.disks[p.index] },
        fullReadReason: p.view.fullReadReason,
      })),
      progress: this.tracker.snapshot(),
    };
  }

  /**
   * Records the first failure and stops everything. Later errors that the stop itself caused
   * (cancelled tasks, aborted sink calls) are dropped; any other is kept in `suppressed`.
   */
  private fail(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    if (!this.failure) {
      this.failure = e;
      this.stop.abort(e);
      return;
    }
    if (this.causedByStop(e)) return;
    if (this.failure instanceof PipelineError) this.failure.suppressed.push(e);
  }

  private causedByStop(e: Error): boolean {
    for (let c: unknown = e; c instanceof Error; c = c.cause) {
      if (c === this.failure || c.name === 'AbortError' || isPipelineError(c, 'ABORTED')) return true;
    }
    return false;
  }

  private report(): void {
    this.tracker.sample();
    const cb = this.options.onProgress;
    if (!cb) return;
    try {
      cb(this.tracker.snapshot());
    } catch (err) {
      this.fail(err);
    }
  }

  private async planDisks(): Promise<DiskPlan[]> {
    const plans: DiskPlan[] = [];
    for (const [index, input] of this.options.disks.entries()) {
      const { view } = input;
      const allocation = (await this.collect(view, 'allocation', () => view.allocation())) ?? [];
      const changed = await this.collect(view, 'changed', () => view.changed());
      const actions = planChunks({
        sizeBytes: view.sizeBytes,
        chunkSize: CHUNK_SIZE,
        allocation,
        changed,
        parentDigests: input.parentDigests ? parentHex(input.parentDigests) : null,
      });
      const count = actions.length;
      const kinds = new Uint8Array(count);
      const digests = DigestList.fromBytes(Buffer.alloc(count * DIGEST_BYTES));
      let toRead = 0;
      actions.forEach((a, i) => {
        if (a.kind === 'zero') kinds[i] = PLAN_ZERO;
        else if (a.kind === 'reuse') {
          kinds[i] = PLAN_REUSE;
          digests.bytes.write(a.digest, i * DIGEST_BYTES, 'hex');
        } else {
          kinds[i] = PLAN_READ;
          toRead += chunkLength(view.sizeBytes, i);
        }
      });
      this.tracker.setToRead(index, toRead);
      plans.push({ index, view, size: view.sizeBytes, count, kinds, digests });
    }
    return plans;
  }

  /** Drains a driver's extent listing (null stays null), as READ_FAILED if the driver fails. */
  private async collect<E>(view: DiskView, operation: 'allocation' | 'changed', list: () => AsyncIterable<E> | null): Promise<E[] | null> {
    try {
      const it = list();
      if (it === null) return null;
      const out: E[] = [];
      for await (const e of it) {
        if (this.stop.signal.aborted) throw abortedError(this.stop.signal);
        out.push(e);
      }
      return out;
    } catch (err) {
      if (err instanceof PipelineError) throw err;
      throw new PipelineError('READ_FAILED', `disk ${view.name}: listing ${operation} extents failed: ${messageOf(err)}`, { disk: view.name, operation }, { cause: err });
    }
  }

  /** The reader loop: walks each plan in disk order and starts a task per run of chunks to read. */
  private async readDisks(plans: DiskPlan[]): Promise<void> {
    const signal = this.stop.signal;
    for (const plan of plans) {
      let passed = 0;
      for (let i = 0; i < plan.count; ) {
        if (signal.aborted) return;
        const kind = plan.kinds[i];
        if (kind !== PLAN_READ) {
          this.tracker.add(plan.index, kind === PLAN_ZERO ? 'zero' : 'reusedParent', chunkLength(plan.size, i));
          i++;
          // Long runs of zero or reused chunks must not starve timers and I/O callbacks.
          if (++passed % 4096 === 0) await yieldToEventLoop();
          continue;
        }
        let end = i + 1;
        while (end < plan.count && end - i < this.settings.maxReadChunks && plan.kinds[end] === PLAN_READ) end++;
        await this.chunkSlots.acquire(end - i, signal);
        try {
          await this.readSlots.acquire(1, signal);
        } catch (err) {
          this.chunkSlots.release(end - i);
          throw err;
        }
        this.track(this.processRun(plan, i, end));
        i = end;
      }
    }
  }

  private track(task: Promise<void>): void {
    this.tasks.add(task);
    task.then(
      () => this.tasks.delete(task),
      (err: unknown) => {
        this.tasks.delete(task);
        this.fail(err);
      },
    );
  }

  /**
   * Chunks [first, end) of a disk: read, hash (zero check first), then compress while asking the
   * hub which it lacks, and upload those. Holds one chunk slot per chunk (taken by the reader
   * loop) and one read slot until the read is done. Its buffers go back to their pools only when
   * nothing can touch them any more; after a failure a worker might still, so they are dropped.
   */
  private async processRun(plan: DiskPlan, first: number, end: number): Promise<void> {
    const signal = this.stop.signal;
    const pool = this.pool!;
    const readBuffer = this.readBuffers.take();
    let frameBuffer: SharedArrayBuffer | null = null;
    try {
      const chunks: BufferRange[] = [];
      let length = 0;
      for (let i = first; i < end; i++) {
        const len = chunkLength(plan.size, i);
        chunks.push({ offset: length, length: len });
        length += len;
      }
      const into = Buffer.from(readBuffer, 0, length);
      const data = await this.readSource(plan, first * CHUNK_SIZE, length, into);
      if (signal.aborted) return;
      // A view that did not read into the buffer it was given: its bytes are copied in once.
      if (data.buffer !== readBuffer || data.byteOffset !== 0) into.set(data);
      this.tracker.add(plan.index, 'read', length, chunks.length);

      const hashed = await pool.hash(readBuffer, chunks, signal);
      this.tracker.addWorkerBusy(hashed.busyMs);
      const digests = hashed.reply.digests;
      if (digests.length !== chunks.length) {
        throw new PipelineError('WORKER_TASK_FAILED', `worker hashed ${digests.length} of ${chunks.length} chunks`, { operation: 'hash' });
      }
      const nonZero = chunks.flatMap((c, k) => {
        const digest = digests[k];
        if (digest === null) {
          this.tracker.add(plan.index, 'zero', c.length); // the result already holds the zero marker
          return [];
        }
        plan.digests.bytes.write(digest, (first + k) * DIGEST_BYTES, 'hex');
        return [k];
      });
      if (nonZero.length === 0 || signal.aborted) {
        this.readBuffers.give(readBuffer);
        return;
      }

      // Compressing while the hub is asked hides the question's round trip behind the worker's
      // ~1.3 ms a chunk: a full backup uploads nearly every chunk; one the hub has wastes little.
      frameBuffer = this.frameBuffers.take();
      const ranges = nonZero.map((_, j) => ({ offset: j * FRAME_STRIDE + FRAME_HEADROOM, length: FRAME_STRIDE - FRAME_HEADROOM }));
      const [compressed, verdicts] = await Promise.allSettled([
        pool.compress(readBuffer, nonZero.map((k) => chunks[k]!), this.settings.compressionLevel, frameBuffer, ranges, signal),
        Promise.all(nonZero.map((k) => this.deduper.claim(digests[k]!))),
      ]);
      if (compressed.status === 'rejected') throw compressed.reason;
      if (verdicts.status === 'rejected') throw verdicts.reason;
      this.readBuffers.give(readBuffer);
      this.tracker.addWorkerBusy(compressed.value.busyMs);
      const lengths = compressed.value.reply.lengths;
      if (lengths.length !== nonZero.length) {
        throw new PipelineError('WORKER_TASK_FAILED', `worker compressed ${lengths.length} of ${nonZero.length} chunks`, { operation: 'compress' });
      }
      const uploads: Promise<void>[] = [];
      nonZero.forEach((k, j) => {
        const verdict = verdicts.value[j];
        if (verdict !== 'upload') {
          this.tracker.add(plan.index, 'deduplicated', chunks[k]!.length);
          return;
        }
        const frame = Buffer.from(frameBuffer!, ranges[j]!.offset, lengths[j]);
        uploads.push(this.upload(plan, digests[k]!, frame, chunks[k]!.length));
      });
      // The first failure stops the run at once (the sink drops what is on the wire); the frames
      // stay untouched until every upload has settled.
      const settled = await Promise.allSettled(uploads.map((u) => u.catch((err: unknown) => (this.fail(err), Promise.reject(err)))));
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      this.frameBuffers.give(frameBuffer);
    } finally {
      this.chunkSlots.release(end - first);
    }
  }

  private async readSource(plan: DiskPlan, offset: number, length: number, into: Buffer): Promise<Buffer> {
    const { view } = plan;
    this.tracker.sourceRead.begin();
    try {
      const data = await view.read(offset, length, into);
      if (data.length !== length) {
        throw new PipelineError('READ_FAILED', `disk ${view.name}: read of ${length} bytes at ${offset} returned ${data.length}`, { disk: view.name, operation: 'read', offset, length });
      }
      return data;
    } catch (err) {
      if (err instanceof PipelineError) throw err;
      throw new PipelineError('READ_FAILED', `disk ${view.name}: read of ${length} bytes at ${offset} failed: ${messageOf(err)}`, { disk: view.name, operation: 'read', offset, length }, { cause: err });
    } finally {
      this.tracker.sourceRead.end();
      this.readSlots.release(1);
    }
  }

  private async upload(plan: DiskPlan, digest: string, zstd: Buffer, plaintextLength: number): Promise<void> {
    try {
      await this.tracker.network.time(() => this.options.sink.upload({ digest, zstd, plaintextLength, headroom: FRAME_HEADROOM }, this.stop.signal));
    } catch (err) {
      throw new PipelineError('SINK_FAILED', `uploading chunk ${digest} failed: ${messageOf(err)}`, { operation: 'upload', digest }, { cause: err });
    }
    this.deduper.uploaded(digest);
    this.tracker.add(plan.index, 'transferred', plaintextLength);
    this.tracker.addSent(plan.index, zstd.length);
  }
}

/** planChunks takes hex digests, null for the parent's zero chunks. */
function parentHex(list: DigestList): (string | null)[] {
  const out = new Array<string | null>(list.length);
  for (let i = 0; i < list.length; i++) out[i] = list.isZeroAt(i) ? null : list.hexAt(i);
  return out;
}

function validate(o: BackupPipelineOptions): Settings {
  const int = (name: keyof BackupPipelineOptions, value: number | undefined, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = value ?? dflt;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new PipelineError('INVALID_INPUT', `${name} must be an integer from ${min} to ${max}, got ${v}`, { argument: name });
    }
    return v;
  };
  o.disks.forEach((d, i) => {
    if (!Number.isSafeInteger(d.view.sizeBytes) || d.view.sizeBytes < 0) {
      throw new PipelineError('INVALID_INPUT', `disk ${d.view.name}: size must be a non-negative safe integer, got ${d.view.sizeBytes}`, { argument: `disks[${i}].view.sizeBytes` });
    }
  });
  int('workers', o.workers, availableParallelism(), 1);
  const maxChunksInFlight = int('maxChunksInFlight', o.maxChunksInFlight, 8, 1);
  return {
    progressIntervalMs: int('progressIntervalMs', o.progressIntervalMs, 1000, 1),
    maxChunksInFlight,
    // A read cannot take more slots than exist.
    maxReadChunks: Math.min(int('maxReadChunks', o.maxReadChunks, 2, 1), maxChunksInFlight),
    // As many as there are chunk slots: an incremental reads scattered chunks, each a cold random
    // read, and fewer at a time left the disk waiting (the bench's 16 changed chunks: 0.86 s of
    // pipeline with 4 at a time, 0.65 s with 8). The chunk slots, not this, bound the memory.
    readConcurrency: int('readConcurrency', o.readConcurrency, 8, 1),
    maxMissingBatch: int('maxMissingBatch', o.maxMissingBatch, 256, 1),
    compressionLevel: int('compressionLevel', o.compressionLevel, DEFAULT_COMPRESSION_LEVEL, 1, 22),
  };
}
