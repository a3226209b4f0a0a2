import { abortedError } from './pipeline-error.js';

/**
 * A counting semaphore with a single waiter, for the pipeline's reader loop. The pipeline uses two:
 *
 * - chunk slots, its memory bound: a read takes one slot per chunk it covers before it starts, and
 *   the slots come back only when those chunks are fully dealt with (zero, deduplicated or
 *   uploaded), so the chunk bytes held never exceed slots × 4 MiB, whatever the disk size and
 *   however slow the sink;
 * - read slots, the number of source reads outstanding at once.
 *
 * One waiter at a time keeps reads in disk order and the code free of fairness questions.
 */
export class Slots {
  private free: number;
  private waiter: { units: number; resolve: () => void } | null = null;

  constructor(readonly capacity: number) {
    this.free = capacity;
  }

  get inUse(): number {
    return this.capacity - this.free;
  }

  /** Waits until `units` slots are free and takes them; rejects with ABORTED when `signal` fires. */
  acquire(units: number, signal: AbortSignal): Promise<void> {
    if (!Number.isInteger(units) || units < 1 || units > this.capacity) throw new RangeError(`cannot take ${units} of ${this.capacity} slots`);
    if (this.waiter) throw new Error('Slots.acquire: one waiter at a time');
    if (signal.aborted) return Promise.reject(abortedError(signal));
    if (this.free >= units) {
      this.free -= units;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.waiter = null;
        reject(abortedError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiter = {
        units,
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
    });
  }

  release(units: number): void {
    this.free += units;
    if (this.free > this.capacity) throw new Error(`Slots: released more than taken (${this.free} > ${this.capacity})`);
    const w = this.waiter;
    if (w && this.free >= w.units) {
      this.waiter = null;
      this.free -= w.units;
      w.resolve();
    }
  }
}
