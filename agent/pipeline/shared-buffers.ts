/**
 * A pool of SharedArrayBuffers of one size, reused from chunk to chunk: the pipeline reads into
 * them and the workers hash and compress in place. A fresh 8 MiB buffer per read (or one moved to
 * a worker and back, which arrives as a new object) counts as new external memory each time, and
 * V8 answers every 64 MiB of that with a full garbage collection.
 */
export class SharedBuffers {
  private readonly free: SharedArrayBuffer[] = [];

  constructor(
    /** Bytes of each buffer. */
    readonly size: number,
    /** Free buffers kept at most; the pipeline never has more of them in use at once. */
    private readonly keep: number,
  ) {}

  /** A free buffer, or a new one. */
  take(): SharedArrayBuffer {
    return this.free.pop() ?? new SharedArrayBuffer(this.size);
  }

  /** Returns a buffer no one reads or writes any more (a worker that might still is never given back). */
  give(sab: SharedArrayBuffer): void {
    if (sab.byteLength === this.size && this.free.length < this.keep) this.free.push(sab);
  }
}
