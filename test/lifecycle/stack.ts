import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import type { ExecutionDetailView, JobView } from '../../hub/lifecycle/read-model.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { assertInvariants } from './invariants.js';
import { enrollAgent, eventually, freePort, HUB_BIN, hubEnv, startAgent, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';

const run = promisify(execFile);
export const MiB = 1024 * 1024;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'partial']);

/**
 * Short timers, so faults resolve in seconds: the monitor sweeps every 200 ms, an offline agent's
 * jobs fail AGENT_LOST after 3 s, a silent job stalls after 4 s and fails 3 s later, and a
 * restarted hub waits 2 s for agents before it calls anything lost.
 */
export const FAST_LIFECYCLE: Record<string, string> = {
  BACKHAUL_HUB_MONITOR_INTERVAL_MS: '200',
  BACKHAUL_HUB_DISPATCH_INTERVAL_MS: '200',
  BACKHAUL_HUB_ACK_TIMEOUT_MS: '2000',
  BACKHAUL_HUB_AGENT_LOST_GRACE_MS: '3000',
  BACKHAUL_HUB_STALL_TIMEOUT_MS: '4000',
  BACKHAUL_HUB_STALL_GRACE_MS: '3000',
  BACKHAUL_HUB_FAILOVER_GRACE_MS: '2000',
  BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS: '500',
  BACKHAUL_HUB_HEARTBEAT_GRACE_MS: '2000',
};

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  ms: number;
}

export interface StackAgent {
  id: string;
  stateDir: string;
  proc: Proc;
  env: Record<string, string>;
  /** Starts the agent process again on the same state directory (after a kill). */
  restart(extraEnv?: Record<string, string>): Promise<Proc>;
}

/**
 * The whole system as an operator runs it: a real `backhaul-hub serve` process on a fresh
 * PostgreSQL database, real `backhaul-agent` processes enrolled with join tokens, and the REST
 * API with an operator token created by `backhaul-hub api-token create`. Tests drive it only
 * through REST, processes and signals, and read the database only to check the invariants.
 */
export class Stack {
  readonly agents: StackAgent[] = [];
  hub!: Proc;
  base = '';
  token = '';
  private readonly procs: Proc[] = [];

  private constructor(
    readonly db: TestDatabase,
    readonly hubOpts: HubProcOptions,
  ) {}

  static async start(env: Record<string, string> = {}, db?: TestDatabase): Promise<Stack> {
    const database = db ?? (await createTestDatabase('bh_life'));
    const s = new Stack(database, { port: await freePort(), dataDir: await tempDir('bh-life-hub'), databaseUrl: database.url, env: { ...FAST_LIFECYCLE, ...env } });
    await s.startHub();
    const { stdout } = await run(process.execPath, [HUB_BIN, 'api-token', 'create', '--name', 'lifecycle-tests', '--role', 'admin', '--json'], { env: hubEnv(s.hubOpts) });
    s.token = (JSON.parse(stdout) as { token: string }).token;
    return s;
  }

  /** Starts (or restarts) the hub process on the same port, data directory and database. */
  async startHub(): Promise<Proc> {
    this.hub = await startHub(this.hubOpts, 'hub');
    this.procs.push(this.hub);
    const started = this.hub.lines.find((l) => l.msg === 'hub started')!;
    this.base = `http://127.0.0.1:${started.http_port as number}`;
    return this.hub;
  }

  /** Enrolls an agent, starts it with these targets, and waits until REST shows it online. */
  async addAgent(targets: unknown[], env: Record<string, string> = {}, name?: string): Promise<StackAgent> {
    const stateDir = await tempDir('bh-life-agent');
    const id = await enrollAgent(this.hubOpts, stateDir, name);
    const agentEnv = { BACKHAUL_AGENT_TARGETS: JSON.stringify(targets), BACKHAUL_AGENT_RECONNECT_BASE_MS: '100', BACKHAUL_AGENT_RECONNECT_CAP_MS: '500', ...env };
    const a: StackAgent = {
      id,
      stateDir,
      env: agentEnv,
      proc: null as unknown as Proc,
      restart: async (extra = {}) => {
        a.proc = startAgent(stateDir, { ...a.env, ...extra }, `agent-${id.slice(0, 6)}`);
        this.procs.push(a.proc);
        await this.waitOnline(id);
        return a.proc;
      },
    };
    await a.restart();
    this.agents.push(a);
    return a;
  }

  async waitOnline(agentId: string, timeoutMs = 20_000): Promise<void> {
    await eventually(async () => (await this.api('GET', `/api/v1/agents/${agentId}`)).body?.online === true, timeoutMs, `agent ${agentId} online`);
  }

  async api<T = any>(method: string, path: string, body?: unknown): Promise<ApiAnswer<T>> {
    const t0 = performance.now();
    const res = await fetch(this.base + path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as T) : (null as T), ms: performance.now() - t0 };
  }

  /** The targets rows of an agent's inventory, by the agent's own ref. */
  async targetsOf(agentId: string): Promise<Map<string, string>> {
    const res = await eventually(async () => {
      const r = await this.api<{ items: { id: string; ref: string }[] }>('GET', `/api/v1/targets?agent_id=${agentId}`);
      return r.status === 200 && r.body.items.length > 0 ? r.body.items : null;
    }, 10_000, `targets of ${agentId}`);
    return new Map(res.map((t) => [t.ref, t.id]));
  }

  async createFlow(name: string, targetIds: string[]): Promise<string> {
    const r = await this.api<{ id: string }>('POST', '/api/v1/flows', { name, target_ids: targetIds });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    return r.body.id;
  }

  /** POST …/run, checked against DESIGN §1: 202, running, no completed_at, the jobs that exist. */
  async runFlow(flowId: string, expectedJobs: number): Promise<{ id: string; ms: number; body: ExecutionDetailView }> {
    const r = await this.api<ExecutionDetailView>('POST', `/api/v1/flows/${flowId}/run`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.status).toBe('running');
    expect(r.body.completed_at).toBeNull();
    expect(r.body.job_counts.total).toBe(expectedJobs);
    return { id: r.body.id, ms: r.ms, body: r.body };
  }

  async execution(id: string): Promise<ExecutionDetailView> {
    const r = await this.api<ExecutionDetailView>('GET', `/api/v1/executions/${id}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body;
  }

  async job(id: string): Promise<JobView> {
    const r = await this.api<JobView>('GET', `/api/v1/jobs/${id}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body;
  }

  /** Polls the execution until it is terminal, checking on every poll that no progress went backwards. */
  async finish(id: string, timeoutMs = 60_000, onPoll?: (e: ExecutionDetailView) => void | Promise<void>): Promise<ExecutionDetailView> {
    const watch = new ProgressWatch();
    const end = Date.now() + timeoutMs;
    for (;;) {
      const e = await this.execution(id);
      watch.see(e);
      await onPoll?.(e);
      if (TERMINAL.has(e.status)) return e;
      if (Date.now() > end) throw new Error(`execution ${id} still ${e.status} after ${timeoutMs} ms: ${JSON.stringify(e.job_counts)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Waits until a job of the execution satisfies pred, and returns it. */
  async jobWhere(executionId: string, pred: (j: JobView) => boolean, timeoutMs = 30_000, what = 'job state'): Promise<JobView> {
    return eventually(async () => (await this.execution(executionId)).jobs.find(pred) ?? null, timeoutMs, what);
  }

  /**
   * The truth rules over the database, and that no hub's reconciler had to fix anything: in a
   * correct system the event path settles every execution by itself.
   */
  async checkTruth(): Promise<void> {
    await assertInvariants(this.db.url);
    const fixes = this.procs.filter((p) => p.name === 'hub').flatMap((p) => p.lines.filter((l) => l.msg === 'reconciler fixed an execution the event path missed'));
    expect(fixes).toEqual([]);
  }

  async stop(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill('SIGKILL')));
    await this.db.drop();
  }
}

/** Asserts that percentages and bytes of executions and jobs never go backwards between polls. */
export class ProgressWatch {
  private readonly last = new Map<string, { percent: number; bytes: number }>();

  see(e: ExecutionDetailView): void {
    this.check(`execution ${e.id}`, e.percent, e.bytes_done);
    expect(e.percent === 100, `execution ${e.id} shows 100 % only when it has ended`).toBe(e.percent === 100 && e.status !== 'running');
    for (const j of e.jobs) {
      this.check(`job ${j.id}`, j.percent, j.bytes_done);
      // DESIGN §1: 100 only once the job is terminal (a job that failed after moving every byte may show it).
      if (j.percent === 100) expect(['succeeded', 'failed', 'cancelled'], `job ${j.id} shows 100 % while ${j.status}`).toContain(j.status);
    }
  }

  private check(key: string, percent: number, bytes: number): void {
    const prev = this.last.get(key);
    if (prev) {
      expect(percent, `${key}: percent went from ${prev.percent} to ${percent}`).toBeGreaterThanOrEqual(prev.percent);
      expect(bytes, `${key}: bytes went from ${prev.bytes} to ${bytes}`).toBeGreaterThanOrEqual(prev.bytes);
    }
    this.last.set(key, { percent, bytes });
  }
}

/** A raw VM image for the file driver: `dataMiB` of random bytes, then zeros up to `sizeMiB`. */
export async function rawImage(dir: string, name: string, sizeMiB: number, dataMiB = sizeMiB): Promise<string> {
  const path = join(dir, `${name}.raw`);
  await writeFile(path, Buffer.concat([randomBytes(dataMiB * MiB), Buffer.alloc((sizeMiB - dataMiB) * MiB)]));
  return path;
}

export function fileTarget(id: string, path: string): { id: string; name: string; driver: 'file'; disks: { name: string; path: string }[] } {
  return { id, name: id, driver: 'file', disks: [{ name: 'sda', path }] };
}
