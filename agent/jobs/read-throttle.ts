import type { DiskView } from '../drivers/driver.js';

/**
 * Caps how fast a backup reads a hypervisor's disks, so a backup during business hours does
 * not starve the guests' own I/O. One budget is shared by all disks of a job: it is the host's
 * storage that is protected, not each disk. Reads wait before they start; a wait is cut short
 * by the job's abort signal, so a cancelled job never sleeps out its budget.
 */
export class ReadThrottle {
  /** When the bytes reserved so far will have been "paid for" at the configured rate. */
  private paidUntil = 0;

  constructor(
    private readonly bytesPerSecond: number,
    private readonly signal: AbortSignal,
  ) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`read limit must be positive, got ${bytesPerSecond}`);
  }

  private async reserve(bytes: number): Promise<void> {
    const now = Date.now();
    const start = Math.max(now, this.paidUntil);
    this.paidUntil = start + (bytes * 1000) / this.bytesPerSecond;
    const wait = start - now;
    if (wait <= 0) return;
    this.signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(t);
        reject(this.signal.reason);
      };
      const t = setTimeout(() => {
        this.signal.removeEventListener('abort', onAbort);
        resolve();
      }, wait);
      this.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The same view, whose reads wait for the budget. */
  wrap(view: DiskView): DiskView {
    return {
      name: view.name,
      sizeBytes: view.sizeBytes,
      fullReadReason: view.fullReadReason,
      nextBitmap: view.nextBitmap,
      allocation: () => view.allocation(),
      changed: () => view.changed(),
      read: async (offset, length, into) => {
        await this.reserve(length);
        return view.read(offset, length, into);
      },
    };
  }
}
