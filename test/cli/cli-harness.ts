import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hubEnv, ROOT, tempDir } from '../support/processes.js';
import { writeFile } from 'node:fs/promises';
import { Stack } from '../lifecycle/stack.js';

const run = promisify(execFile);
export const CTL_BIN = join(ROOT, 'dist/hub/cli/main.js');

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * backhaulctl as an operator runs it, against a Stack's hub: its own process, TLS to the gRPC
 * port with the hub's CA from `backhaul-hub ca`, a token in BACKHAUL_TOKEN, and a config
 * directory of its own so no login on the machine leaks in.
 */
export class Ctl {
  private constructor(
    readonly stack: Stack,
    readonly hub: string,
    readonly caFile: string,
    readonly caSha256: string,
    readonly home: string,
  ) {}

  static async for(stack: Stack): Promise<Ctl> {
    const env = hubEnv(stack.hubOpts);
    const pem = (await run(process.execPath, [join(ROOT, 'dist/hub/main.js'), 'ca'], { env })).stdout;
    const sha = (await run(process.execPath, [join(ROOT, 'dist/hub/main.js'), 'ca', '--sha256'], { env })).stdout.trim();
    const home = await tempDir('bh-ctl-home');
    const caFile = join(home, 'hub-ca.pem');
    await writeFile(caFile, pem);
    return new Ctl(stack, `127.0.0.1:${stack.hubOpts.port}`, caFile, sha, home);
  }

  /** The environment a logged-out operator has; `extra` adds to it (or removes, with undefined). */
  env(extra: Record<string, string | undefined> = {}, token = this.stack.token): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: this.home, XDG_CONFIG_HOME: join(this.home, '.config'), BACKHAUL_HUB: this.hub, BACKHAUL_TOKEN: token, BACKHAUL_CA: this.caFile };
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    return env;
  }

  /** Runs a command to its end. */
  async run(args: string[], opts: { token?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<CtlResult> {
    return new Promise((resolve) => {
      execFile(process.execPath, [CTL_BIN, ...args], { env: this.env(opts.env, opts.token), timeout: opts.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  /** Runs a command with --json and parses what it printed; fails the test on a non-zero exit. */
  async json<T = any>(args: string[], opts: { token?: string } = {}): Promise<T> {
    const r = await this.run([...args, '--json'], opts);
    if (r.code !== 0) throw new Error(`backhaulctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /** Starts a long command (watch, run --wait) and records each line it prints with when it came. */
  start(args: string[], opts: { token?: string } = {}): Running {
    return new Running(spawn(process.execPath, [CTL_BIN, ...args], { env: this.env({}, opts.token), stdio: ['ignore', 'pipe', 'pipe'] }));
  }
}

export class Running {
  readonly lines: { at: number; text: string }[] = [];
  stderr = '';
  readonly exited: Promise<number>;

  constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      for (const text of parts) this.lines.push({ at: Date.now(), text });
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  }

  get stdout(): string {
    return this.lines.map((l) => l.text).join('\n');
  }
}
