/**
 * How long a stage had work in progress: the union of the intervals during which at least one of
 * its operations was outstanding. Concurrent operations do not add up, so busy time never exceeds
 * wall time and busy / wall is the fraction of time the stage was working.
 */
export class BusyMeter {
  private active = 0;
  private since = 0;
  private total = 0;

  begin(): void {
    if (this.active++ === 0) this.since = performance.now();
  }

  end(): void {
    if (this.active === 0) throw new Error('BusyMeter.end without begin');
    if (--this.active === 0) this.total += performance.now() - this.since;
  }

  /** Busy milliseconds so far, including the interval in progress. */
  busyMs(): number {
    return this.total + (this.active > 0 ? performance.now() - this.since : 0);
  }

  async time<T>(op: () => Promise<T>): Promise<T> {
    this.begin();
    try {
      return await op();
    } finally {
      this.end();
    }
  }
}
