import { BusyMeter } from '../../shared/busy-meter.js';

/**
 * Byte and chunk counts of a backup, or of one of its disks. Every chunk ends in exactly one of
 * zero, reusedParent, deduplicated and transferred, so at the end those four add up to the total.
 * Counters only ever grow.
 */
export interface TransferCounters {
  /** Disk size(s). */
  bytesTotal: number;
  /** What the chunk plan says must be read from the source. */
  bytesToRead: number;
  /** Read from the source so far. */
  bytesRead: number;
  /** All-zero chunks: never sent (found so by the plan, or read and found zero). */
  bytesZero: number;
  /** Unchanged since the parent backup: its digest is reused, the chunk is not read. */
  bytesReusedParent: number;
  /** Read and hashed, but the hub already had it (or an earlier chunk of this backup is the same). */
  bytesDeduplicated: number;
  /** Plaintext of new chunks the hub has stored. */
  bytesTransferred: number;
  /** Compressed bytes sent for them. */
  bytesSent: number;
  chunksTotal: number;
  chunksRead: number;
  chunksZero: number;
  chunksReusedParent: number;
  chunksDeduplicated: number;
  chunksTransferred: number;
}

export type CounterKind = 'read' | 'zero' | 'reusedParent' | 'deduplicated' | 'transferred';

/** Fraction of wall time (0..1) each stage was working; the largest names the bottleneck. */
export interface StageBusy {
  /** At least one read from the source outstanding. */
  sourceRead: number;
  /** Worker threads computing hashes, zero checks and zstd, as a share of all the pool's threads. */
  hashCompress: number;
  /** At least one sink call (missing or upload) outstanding. */
  network: number;
  /** The hub serving this backup's calls, as the sink reports it; null if it cannot tell. */
  hubWrite: number | null;
}

/** What the pipeline reports; field names follow JobProgress in proto/backhaul/v1/agent.proto. */
export interface PipelineProgress extends TransferCounters {
  /** bytesReusedParent + bytesDeduplicated. */
  bytesReused: number;
  /** bytesZero + bytesReused + bytesTransferred: the bytes fully accounted for. */
  bytesDone: number;
  /** Rate of bytesDone over the recent window. */
  rateBytesPerSecond: number;
  /** Seconds left, or null while unknown. See ProgressTracker.snapshot. */
  etaSeconds: number | null;
  elapsedMs: number;
  /** Over the recent window (the bottleneck now). */
  busy: StageBusy;
  /** Since the pipeline started (the bottleneck of the run). */
  busyOverall: StageBusy;
  /** The run is over: succeeded, failed or cancelled. */
  done: boolean;
}

export function emptyCounters(bytesTotal = 0, chunksTotal = 0): TransferCounters {
  return {
    bytesTotal,
    bytesToRead: 0,
    bytesRead: 0,
    bytesZero: 0,
    bytesReusedParent: 0,
    bytesDeduplicated: 0,
    bytesTransferred: 0,
    bytesSent: 0,
    chunksTotal,
    chunksRead: 0,
    chunksZero: 0,
    chunksReusedParent: 0,
    chunksDeduplicated: 0,
    chunksTransferred: 0,
  };
}

interface Sample {
  t: number;
  done: number;
  read: number;
  readBusy: number;
  workerBusy: number;
  networkBusy: number;
  hubBusy: number;
}

const BYTE_FIELD: Record<CounterKind, keyof TransferCounters> = {
  read: 'bytesRead',
  zero: 'bytesZero',
  reusedParent: 'bytesReusedParent',
  deduplicated: 'bytesDeduplicated',
  transferred: 'bytesTransferred',
};
const CHUNK_FIELD: Record<CounterKind, keyof TransferCounters> = {
  read: 'chunksRead',
  zero: 'chunksZero',
  reusedParent: 'chunksReusedParent',
  deduplicated: 'chunksDeduplicated',
  transferred: 'chunksTransferred',
};

/**
 * Counts what the pipeline did, per disk and in total, times its stages, and turns that into
 * progress reports: counters, a recent rate, an ETA and the busy fraction of each stage.
 */
export class ProgressTracker {
  readonly total: TransferCounters;
  readonly disks: TransferCounters[];
  readonly sourceRead = new BusyMeter();
  readonly network = new BusyMeter();
  private workerBusyMs = 0;
  private readonly startedAt = performance.now();
  private readonly hubBase: number;
  /** The all-zero sample at the start, base of busyOverall. */
  private readonly origin: Sample;
  /** Recent samples; the first is the rate window's base. */
  private readonly samples: Sample[] = [];
  private finished = false;

  constructor(
    disks: readonly { bytesTotal: number; chunksTotal: number }[],
    private readonly poolThreads: number,
    private readonly hubBusyMs: (() => number) | null,
    private readonly windowMs = 10_000,
  ) {
    this.disks = disks.map((d) => emptyCounters(d.bytesTotal, d.chunksTotal));
    this.total = emptyCounters(
      disks.reduce((a, d) => a + d.bytesTotal, 0),
      disks.reduce((a, d) => a + d.chunksTotal, 0),
    );
    this.hubBase = hubBusyMs?.() ?? 0;
    this.origin = this.takeSample(this.startedAt);
    this.samples.push(this.origin);
  }

  add(disk: number, kind: CounterKind, bytes: number, chunks = 1): void {
    if (bytes < 0 || chunks < 0) throw new RangeError(`progress counters only grow (${kind} ${bytes} bytes, ${chunks} chunks)`);
    for (const c of [this.disks[disk], this.total]) {
      c[BYTE_FIELD[kind]] += bytes;
      c[CHUNK_FIELD[kind]] += chunks;
    }
  }

  addSent(disk: number, bytes: number): void {
    this.disks[disk].bytesSent += bytes;
    this.total.bytesSent += bytes;
  }

  /** Set once per disk when it is planned, before any of its chunks is counted. */
  setToRead(disk: number, bytes: number): void {
    this.total.bytesToRead += bytes - this.disks[disk].bytesToRead;
    this.disks[disk].bytesToRead = bytes;
  }

  addWorkerBusy(ms: number): void {
    this.workerBusyMs += ms;
  }

  finish(): void {
    this.finished = true;
  }

  /** Records a point for the rate window; the pipeline calls it on each periodic report. */
  sample(): void {
    const now = performance.now();
    this.samples.push(this.takeSample(now));
    // Keep the newest sample that is at least a window old, as the window's base.
    while (this.samples.length > 2 && now - this.samples[1].t >= this.windowMs) this.samples.shift();
  }

  /**
   * The progress now. The ETA divides the bytes still to read by the recent read rate, because
   * reading (and what follows it) is the only work that takes time: zero chunks and chunks reused
   * from the parent cost nothing, so a bytesDone rate would swing with where they lie on the disk.
   * With nothing left to read, it falls back to the bytes not yet done at the recent done rate.
   */
  snapshot(): PipelineProgress {
    const now = performance.now();
    const cur = this.takeSample(now);
    const base = this.samples[0];
    const dt = (now - base.t) / 1000;
    const doneRate = dt > 0 ? (cur.done - base.done) / dt : 0;
    const readRate = dt > 0 ? (cur.read - base.read) / dt : 0;
    const t = this.total;
    const bytesReused = t.bytesReusedParent + t.bytesDeduplicated;
    const bytesDone = t.bytesZero + bytesReused + t.bytesTransferred;
    let etaSeconds: number | null = null;
    if (bytesDone >= t.bytesTotal) etaSeconds = 0;
    else if (t.bytesToRead > t.bytesRead && readRate > 0) etaSeconds = (t.bytesToRead - t.bytesRead) / readRate;
    else if (doneRate > 0) etaSeconds = (t.bytesTotal - bytesDone) / doneRate;
    return {
      ...t,
      bytesReused,
      bytesDone,
      rateBytesPerSecond: doneRate,
      etaSeconds,
      elapsedMs: now - this.startedAt,
      busy: this.busyBetween(base, cur),
      busyOverall: this.busyBetween(this.origin, cur),
      done: this.finished,
    };
  }

  private busyBetween(a: Sample, b: Sample): StageBusy {
    const wall = b.t - a.t;
    const frac = (x: number) => (wall > 0 ? Math.min(1, Math.max(0, x / wall)) : 0);
    return {
      sourceRead: frac(b.readBusy - a.readBusy),
      hashCompress: frac((b.workerBusy - a.workerBusy) / this.poolThreads),
      network: frac(b.networkBusy - a.networkBusy),
      hubWrite: this.hubBusyMs ? frac(b.hubBusy - a.hubBusy) : null,
    };
  }

  private takeSample(t: number): Sample {
    const c = this.total;
    return {
      t,
      done: c.bytesZero + c.bytesReusedParent + c.bytesDeduplicated + c.bytesTransferred,
      read: c.bytesRead,
      readBusy: this.sourceRead.busyMs(),
      workerBusy: this.workerBusyMs,
      networkBusy: this.network.busyMs(),
      hubBusy: this.hubBusyMs ? this.hubBusyMs() - this.hubBase : 0,
    };
  }
}
