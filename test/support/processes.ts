import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export { freePort } from '../../shared/free-port.js';

const run = promisify(execFile);

/** The project root, whether this runs from test/support (vitest) or dist/test/support (demo, bench). */
export const ROOT = (() => {
  const here = fileURLToPath(new URL('.', import.meta.url));
  return here.includes('/dist/') ? resolve(here, '../../..') : resolve(here, '../..');
})();
export const HUB_BIN = join(ROOT, 'dist/hub/main.js');
export const AGENT_BIN = join(ROOT, 'dist/agent/main.js');

export const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), `${prefix}-`));

/** A child process with its JSON log lines collected, and a way to wait for one. */
export class Proc {
  readonly lines: Record<string, unknown>[] = [];
  readonly stderr: string[] = [];
  private waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    private readonly echo = false,
  ) {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (this.echo) process.stdout.write(`[${name}] ${line}\n`);
        try {
          const obj = JSON.parse(line) as Record<string, unknown>;
          this.lines.push(obj);
          this.waiters = this.waiters.filter((w) => (w.pred(obj) ? (w.resolve(obj), false) : true));
        } catch {
          // not a log line (a CLI's plain output); kept out of the structured log
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (c: string) => this.stderr.push(c));
    this.exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
  }

  /** Resolves with the first log line (past or future) matching pred. */
  waitFor(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000, what = 'log line'): Promise<Record<string, unknown>> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; stderr: ${this.stderr.join('').slice(-2000)}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (l) => (clearTimeout(t), resolve(l)) });
    });
  }

  waitForMsg(msg: string, timeoutMs?: number, extra: (l: Record<string, unknown>) => boolean = () => true) {
    return this.waitFor((l) => l.msg === msg && extra(l), timeoutMs, `"${msg}"`);
  }

  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export interface HubProcOptions {
  port: number;
  dataDir: string;
  databaseUrl?: string;
  env?: Record<string, string>;
  echo?: boolean;
}

export function hubEnv(o: HubProcOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BACKHAUL_HUB_LISTEN: `127.0.0.1:${o.port}`, BACKHAUL_HUB_HTTP_LISTEN: '127.0.0.1:0', BACKHAUL_HUB_DATA_DIR: o.dataDir, ...o.env };
  if (o.databaseUrl) env.DATABASE_URL = o.databaseUrl;
  else delete env.DATABASE_URL;
  return env;
}

export async function startHub(o: HubProcOptions, name = 'hub'): Promise<Proc> {
  const p = new Proc(name, spawn(process.execPath, [HUB_BIN, 'serve'], { env: hubEnv(o), stdio: ['ignore', 'pipe', 'pipe'] }), o.echo);
  try {
    await Promise.race([
      p.waitForMsg('hub started', 60_000),
      p.exited.then((e) => {
        throw new Error(`${name} exited (${e.code ?? e.signal}) before it started: ${p.stderr.join('')}`);
      }),
    ]);
  } catch (err) {
    await p.kill('SIGKILL');
    throw err;
  }
  return p;
}

/** `backhaul-hub token create --json` against the hub's database. */
export async function createToken(o: HubProcOptions, ttl = '1h'): Promise<{ token: string; expires_at: string; ca_sha256: string }> {
  const { stdout } = await run(process.execPath, [HUB_BIN, 'token', 'create', '--json', '--ttl', ttl], { env: hubEnv(o) });
  return JSON.parse(stdout) as { token: string; expires_at: string; ca_sha256: string };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runAgentCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [AGENT_BIN, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function enrollAgent(hub: HubProcOptions, stateDir: string, name?: string): Promise<string> {
  const t = await createToken(hub);
  const args = ['enroll', '--hub', `127.0.0.1:${hub.port}`, '--token', t.token, '--ca-sha256', t.ca_sha256];
  if (name) args.push('--name', name);
  const r = await runAgentCli(args, { BACKHAUL_AGENT_STATE_DIR: stateDir });
  if (r.code !== 0) throw new Error(`enroll failed (${r.code}): ${r.stderr}`);
  return /agent ([0-9a-f-]{36})/.exec(r.stdout)![1]!;
}

export function startAgent(stateDir: string, env: Record<string, string> = {}, name = 'agent', echo = false): Proc {
  return new Proc(
    name,
    spawn(process.execPath, [AGENT_BIN, 'run'], {
      env: { ...process.env, BACKHAUL_AGENT_STATE_DIR: stateDir, BACKHAUL_AGENT_RECONNECT_BASE_MS: '200', BACKHAUL_AGENT_RECONNECT_CAP_MS: '2000', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
    echo,
  );
}

/** Polls fn until it returns a truthy value. */
export async function eventually<T>(fn: () => Promise<T>, timeoutMs = 15_000, what = 'condition'): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
