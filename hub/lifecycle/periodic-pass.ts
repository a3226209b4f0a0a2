import type { Logger } from '../../shared/logger.js';

/**
 * Runs an async pass every `intervalMs`, never two at once: a tick that finds the last pass
 * still running is dropped. A failed pass is logged and tried again at the next tick; stop()
 * waits for the pass in progress.
 */
export class PeriodicPass {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly pass: () => Promise<void>,
    private readonly log: Logger,
    private readonly what: string,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = this.pass()
        .catch((err: unknown) => this.log.warn({ err }, `${this.what} failed; retrying at the next tick`))
        .finally(() => (this.running = null));
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
