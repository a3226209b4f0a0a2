/**
 * Capped exponential backoff with full jitter: the delay for attempt n is uniform in
 * [0, min(cap, base * 2^n)]. Full jitter spreads a fleet of agents that lost the same hub,
 * so they do not all reconnect in the same instant.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly baseMs: number,
    private readonly capMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay, and advances the attempt counter. */
  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }

  reset(): void {
    this.attempt = 0;
  }
}
