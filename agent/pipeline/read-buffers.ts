/**
 * The pipeline's read buffers, reused from read to read. Each travels read → hash worker →
 * compress worker and back; a fresh 8 MiB buffer per read instead left garbage that V8 frees
 * only at its next full GC, which is what pushed the agent's peak RSS over its bound.
 */
export class ReadBuffers {
  private readonly free: ArrayBuffer[] = [];
  /** Every buffer this pool made or took back: only those may be moved to a worker whole. */
  private readonly mine = new WeakSet<ArrayBufferLike>();

  constructor(
    /** Bytes of each buffer: the largest read the pipeline makes. */
    private readonly size: number,
    /** Free buffers kept at most; the pipeline never has more reads in flight. */
    private readonly keep: number,
  ) {}

  /** A Buffer of `length` bytes over a free buffer (or a new one); length <= size. */
  take(length: number): Buffer {
    let ab = this.free.pop();
    if (!ab) {
      ab = new ArrayBuffer(this.size);
      this.mine.add(ab);
    }
    return Buffer.from(ab, 0, length);
  }

  /** Whether `ab` is one of this pool's buffers (so it may be moved to a worker whole). */
  owns(ab: ArrayBufferLike): boolean {
    return this.mine.has(ab);
  }

  /**
   * Returns a buffer. A buffer moved to a worker and back arrives as a new ArrayBuffer object,
   * so the pool cannot know it by identity: any buffer of its size is taken in (the pipeline owns
   * whatever it moved to a worker), and a detached or odd-sized one is dropped.
   */
  give(ab: ArrayBuffer): void {
    if (ab.byteLength !== this.size || this.free.length >= this.keep) return;
    this.mine.add(ab);
    this.free.push(ab);
  }
}
