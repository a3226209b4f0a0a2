import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT } from '../../support/processes.js';

/** The bare fastify peer (bare-rest-server.ts) as a child process. */
export class BareRestPeer {
  readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    this.exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((res) => child.once('exit', () => res()));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(databaseUrl: string, poolMax: number): Promise<BareRestPeer> {
    const child = spawn(process.execPath, [join(ROOT, 'dist/test/bench/lifecycle/bare-rest-server.js')], {
      env: { ...process.env, DATABASE_URL: databaseUrl, BENCH_PEER_POOL_MAX: String(poolMax) },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (code, signal) => reject(new Error(`the bare REST peer exited (${code ?? signal}) before it listened`)));
    });
    return new BareRestPeer(child, (JSON.parse(first) as { port: number }).port);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}
