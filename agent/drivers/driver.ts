/**
 * The hypervisor driver contract. A driver opens a point-in-time view of all of a target's
 * disks at one instant, lists their allocated and changed extents, reads blocks, and removes
 * everything it created on every way out. Drivers know nothing of chunks, the hub or jobs
 * beyond the job id they name their objects after.
 */

/** A byte range of a disk. Offsets and lengths are in bytes. */
export interface Extent {
  offset: number;
  length: number;
}

/** An allocation extent: `zero` ranges read as zeros and need not be read at all. */
export interface AllocationExtent extends Extent {
  zero: boolean;
}

/** One disk of a target as the agent configuration or inventory names it. */
export interface DiskSpec {
  /** Stable name of the disk within its target, e.g. "sda" or "drive-virtio-disk0". */
  name: string;
  /** Image path or block device for the file driver; the QEMU block node name for the qemu driver. */
  path: string;
}

export interface TargetSpec {
  id: string;
  driver: string;
  disks: DiskSpec[];
  /** Driver-specific connection details, e.g. { qmpSocket: "/run/qemu/vm1.qmp" } for qemu. */
  options?: Record<string, string>;
}

export interface OpenOptions {
  /** Every object the driver creates on the hypervisor is named after this id. */
  jobId: string;
  /**
   * Per disk name, the bitmap that records the changes since the last committed backup, as
   * the hub remembers it. Absent: a full backup.
   */
  baseBitmaps?: Record<string, string>;
  /** Receives human-readable notes for the job log (e.g. why an incremental fell back). */
  log?: (level: 'info' | 'warn', message: string) => void;
}

/** One disk frozen at the snapshot's instant. */
export interface DiskView {
  name: string;
  sizeBytes: number;
  /**
   * Why this disk is read in full although a base bitmap was asked for (missing, inconsistent,
   * disk added or resized), or null when its changed extents are known.
   */
  fullReadReason: string | null;
  /** The bitmap that now records changes after this instant; the base of the next incremental. */
  nextBitmap: string | null;
  /** Allocation of the view: data vs zero/hole ranges, covering [0, sizeBytes). */
  allocation(): AsyncIterable<AllocationExtent>;
  /** Ranges changed since the base bitmap, or null when the whole disk must be read. */
  changed(): AsyncIterable<Extent> | null;
  /**
   * Reads exactly `length` bytes at `offset` from the view, into `into` (of exactly `length`
   * bytes) when given, so the caller can reuse its buffers; returns the buffer read into.
   */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
}

/**
 * committed() and abandoned() release the snapshot first (a driver's exports may hold the
 * bitmaps busy), so the views cannot be read after either.
 */
export interface Snapshot {
  disks: DiskView[];
  /** The hub committed the backup: retire the base bitmaps; the next bitmaps become the bases. */
  committed(): Promise<void>;
  /**
   * The backup failed or was cancelled: restore the bitmaps so the next backup still sees
   * every change since the last success.
   */
  abandoned(): Promise<void>;
  /** Removes exports, fleecing nodes, sockets and temp files. Safe to call more than once. */
  release(): Promise<void>;
}

export interface Driver {
  readonly name: string;
  open(target: TargetSpec, opts: OpenOptions): Promise<Snapshot>;
  /** Removes objects left by jobs of this agent that no longer run (after a crash). */
  cleanupLeftovers(target: TargetSpec, liveJobIds: ReadonlySet<string>): Promise<string[]>;
}

/** A driver refused the request or the hypervisor failed; `code` is stable. */
export class DriverError extends Error {
  constructor(
    readonly code: 'TARGET_UNREACHABLE' | 'DISK_NOT_FOUND' | 'SNAPSHOT_FAILED' | 'READ_FAILED' | 'CLEANUP_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'DriverError';
  }
}
