import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { HUB_BIN, hubEnv, type HubProcOptions } from '../support/processes.js';

export type LogLine = Record<string, unknown>;

/**
 * The hub as a real process (`node dist/hub/main.js serve`), its log going to a file rather
 * than a pipe: a pipe this busy benchmark process drains late would push back on the hub
 * (pino flushes its buffer synchronously at exit) and distort what is measured.
 */
export class BenchHub {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    this.exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts the hub and waits for "hub started"; kills it if it does not come up. */
  static async start(o: HubProcOptions & { logPath: string }): Promise<BenchHub> {
    const out = openSync(o.logPath, 'w');
    let hub: BenchHub;
    try {
      hub = new BenchHub(spawn(process.execPath, [HUB_BIN, 'serve'], { env: hubEnv(o), stdio: ['ignore', out, out] }), o.logPath);
    } finally {
      closeSync(out);
    }
    let exited = false;
    void hub.exited.then(() => (exited = true));
    const deadline = Date.now() + 60_000;
    while (!hub.lines().some((l) => l.msg === 'hub started')) {
      if (exited || Date.now() > deadline) {
        await hub.kill('SIGKILL');
        throw new Error(`hub did not start: ${readFileSync(o.logPath, 'utf8').slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return hub;
  }

  /** The hub's structured log so far (lines that are not JSON, such as a crash trace, are skipped). */
  lines(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of readFileSync(this.logPath, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as LogLine);
      } catch {
        // a line still being written
      }
    }
    return out;
  }

  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /**
   * SIGTERM, then SIGKILL after `graceMs`. Returns the exit and how long the hub's own graceful
   * stop took by its log ("hub stopped" after the signal), which this process's busy event
   * loop cannot delay.
   */
  async stop(graceMs = 30_000): Promise<HubStop> {
    const signalledAt = Date.now();
    const kill = setTimeout(() => void this.kill('SIGKILL'), graceMs);
    const exit = await this.kill('SIGTERM');
    clearTimeout(kill);
    const stopped = this.lines().find((l) => l.msg === 'hub stopped' && Date.parse(String(l.time)) >= signalledAt - 1000);
    return { ...exit, gracefulSeconds: stopped ? (Date.parse(String(stopped.time)) - signalledAt) / 1000 : null };
  }

  /** Warnings and errors in the log, counted by message, error code and error message. */
  problems(): Map<string, number> {
    const out = new Map<string, number>();
    for (const l of this.lines()) {
      if (typeof l.level !== 'number' || l.level < 40) continue;
      const err = (l.err as { message?: string } | undefined)?.message;
      const key = `${l.level >= 50 ? 'error' : 'warn'} "${String(l.msg)}"${l.code ? ` ${String(l.code)}` : ''}${err ? ` (${err})` : ''}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
    return out;
  }
}

export interface HubStop {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Seconds from SIGTERM to the hub's "hub stopped" line; null if it never logged it. */
  gracefulSeconds: number | null;
}
