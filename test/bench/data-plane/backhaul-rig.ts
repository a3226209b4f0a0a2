import { execFile, spawn } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AGENT_BIN, Proc, runAgentCli, startAgent } from '../../support/processes.js';
import { StorageDaemon } from '../../support/qemu.js';
import { HubHostClient } from './hub-host-client.js';
import { TERMINAL_STATUSES, type JobRow } from './hub-host-protocol.js';
import type { Rewrite } from './image.js';
import { windowBytesFromEnv } from './http2-window-patch.js';
import { memoryOf } from '../proc-stats.js';
import { dropCaches, watchProcess, type ProcUsage } from './system.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type DriverName = 'qemu' | 'file';

/** The directories of a bench run under `root`, made (0700) except the repository, which the hub creates. */
export async function makeRunDirs(root: string) {
  const dirs = {
    image: join(root, 'image'),
    hubData: join(root, 'hub'),
    repository: join(root, 'hub', 'repository'),
    agentState: join(root, 'agent-state'),
    agentRuntime: join(root, 'agent-run'),
    peers: join(root, 'peers'),
    restore: join(root, 'restore'),
  };
  for (const d of [dirs.image, dirs.hubData, dirs.agentState, dirs.agentRuntime, dirs.peers, dirs.restore]) await mkdir(d, { recursive: true, mode: 0o700 });
  return dirs;
}

/** qemu when qemu-storage-daemon and qemu-img run here, else file (BENCH_DRIVER overrides). */
export async function chooseDriver(): Promise<DriverName> {
  const forced = process.env.BENCH_DRIVER;
  if (forced === 'qemu' || forced === 'file') return forced;
  try {
    await run('qemu-storage-daemon', ['--version']);
    await run('qemu-img', ['--version']);
    await run('qemu-io', ['--version']);
    return 'qemu';
  } catch {
    return 'file';
  }
}

/** One Backhaul job as the benchmark saw it. */
export interface JobMeasure {
  row: JobRow;
  /** created_at → completed_at, as the hub recorded them: what a user waits. */
  seconds: number;
  agent: ProcUsage;
  hub: ProcUsage;
  /** qemu-storage-daemon's, for the qemu driver. */
  storage: ProcUsage | null;
  /** The progress rows seen while the job was transferring (polled every 100 ms). */
  samples: NonNullable<JobRow['progress']>[];
  /** Seconds from created_at to the first poll that saw each phase (and the end), for where the time went. */
  phases: { phase: string; at: number }[];
}

const TARGET_ID = 'bench-vm';
const DISK = 'sda';

/**
 * Backhaul as it runs in production, on this machine: the real hub in its own process
 * (hub-host.ts), one real agent process enrolled with a join token, and for the qemu driver a
 * real qemu-storage-daemon serving the qcow2 image over QMP and NBD.
 */
export class BackhaulRig {
  hub: HubHostClient | null = null;
  agent: Proc | null = null;
  qsd: StorageDaemon | null = null;
  agentId = '';
  /** RSS of both processes once connected, before any job. */
  idleRss = { agent: 0, hub: 0 };

  constructor(
    readonly driver: DriverName,
    private readonly dirs: { hubData: string; repository: string; agentState: string; agentRuntime: string },
    private readonly progress: (m: string) => void,
  ) {}

  /** For qemu: imports the raw image into a qcow2 image that a qemu-storage-daemon serves. */
  async startStorage(rawImage: string): Promise<void> {
    if (this.driver !== 'qemu') return;
    // StorageDaemon makes the image, the monitors and the NBD server; its image is replaced by
    // the imported one while the daemon is stopped.
    this.qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: (await stat(rawImage)).size }] });
    await this.qsd.stop();
    const image = this.qsd.image('disk0');
    await rm(image, { force: true });
    await run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', rawImage, image]);
    await this.qsd.launch();
  }

  async start(databaseUrl: string, rawImage: string): Promise<void> {
    // BENCH_DP_PROFILE=DIR: V8 CPU profiles of the hub and the agent (all threads), written there when they exit.
    // BENCH_DP_NODE_ARGS: more node flags for both (e.g. --trace-gc; the hub's output goes to its log).
    const nodeArgs = [
      ...(process.env.BENCH_DP_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_DP_PROFILE}`] : []),
      ...(process.env.BENCH_DP_NODE_ARGS ?? '').split(' ').filter(Boolean),
    ];
    // BENCH_DP_WINDOW_MIB: the flow-control window experiment (http2-window-patch.ts), in both processes.
    const agentArgs = [...nodeArgs, ...(windowBytesFromEnv() ? ['--import', new URL('./http2-window-patch.js', import.meta.url).href] : [])];
    this.hub = await HubHostClient.start(
      { DATABASE_URL: databaseUrl, BACKHAUL_HUB_DATA_DIR: this.dirs.hubData, BACKHAUL_HUB_REPOSITORY: this.dirs.repository, LOG_LEVEL: 'info' },
      join(this.dirs.hubData, 'hub.log'),
      nodeArgs,
    );
    this.progress(`hub pid ${this.hub.pid} on 127.0.0.1:${this.hub.port}`);
    const token = await this.hub.joinToken();
    const r = await runAgentCli(['enroll', '--hub', `127.0.0.1:${this.hub.port}`, '--token', token, '--ca-sha256', this.hub.caSha256, '--name', 'bench-agent'], {
      BACKHAUL_AGENT_STATE_DIR: this.dirs.agentState,
    });
    if (r.code !== 0) throw new Error(`agent enroll failed (${r.code}): ${r.stderr}`);
    this.agentId = /agent ([0-9a-f-]{36})/.exec(r.stdout)![1]!;
    const target =
      this.driver === 'qemu'
        ? { id: TARGET_ID, name: 'bench vm', driver: 'qemu', disks: [{ name: DISK, path: 'disk0' }], options: { qmpSocket: this.qsd!.driverQmpSocket, nbdSocket: this.qsd!.nbdSocket } }
        : { id: TARGET_ID, name: 'bench vm', driver: 'file', disks: [{ name: DISK, path: rawImage }] };
    const env = { BACKHAUL_AGENT_TARGETS: JSON.stringify([target]), RUNTIME_DIRECTORY: this.dirs.agentRuntime, LOG_LEVEL: 'info' };
    // startAgent's process, with node flags for profiling or the experiment (NODE_OPTIONS refuses --cpu-prof).
    this.agent =
      agentArgs.length === 0
        ? startAgent(this.dirs.agentState, env, 'agent')
        : new Proc('agent', spawn(process.execPath, [...agentArgs, AGENT_BIN, 'run'], { env: { ...process.env, BACKHAUL_AGENT_STATE_DIR: this.dirs.agentState, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
    const deadline = Date.now() + 30_000;
    while (!(await this.hub.connected(this.agentId))) {
      if (Date.now() > deadline || this.agent.child.exitCode !== null) throw new Error(`the agent did not connect: ${this.agent.stderr.join('').slice(-2000)}`);
      await sleep(100);
    }
    // The inventory arrives with Hello; give the hub a moment to store it.
    await sleep(500);
    this.idleRss = { agent: memoryOf(this.agent.child.pid!).rss, hub: memoryOf(this.hub.pid).rss };
    this.progress(`agent ${this.agentId} (pid ${this.agent.child.pid}) connected, driver ${this.driver}`);
  }

  /** Writes the rewrites through the daemon's live export, so its dirty bitmap records them. */
  async rewriteQcow2(rewrites: readonly Rewrite[]): Promise<void> {
    if (!this.qsd) return;
    for (const r of rewrites) await this.qsd.write('disk0', r.offset, r.data);
  }

  backup(): Promise<JobMeasure> {
    return this.measure(() => this.hub!.startBackup(this.agentId, TARGET_ID));
  }

  restore(backupId: string, path: string): Promise<JobMeasure> {
    return this.measure(() => this.hub!.startRestore(backupId, this.agentId, [{ diskName: DISK, path, format: 'raw', create: true }]));
  }

  private async measure(start: () => Promise<string>): Promise<JobMeasure> {
    const hub = this.hub!;
    dropCaches();
    const agentUsage = watchProcess(this.agent!.child.pid!);
    const hubUsage = watchProcess(hub.pid);
    const qsdPid = this.qsd?.proc?.pid;
    const storageUsage = qsdPid ? watchProcess(qsdPid) : null;
    const jobId = await start();
    const samples: NonNullable<JobRow['progress']>[] = [];
    const seen = new Map<string, number>();
    let row: JobRow | null = null;
    const deadline = Date.now() + 10 * 60_000;
    for (;;) {
      row = await hub.job(jobId);
      if (row) {
        const key = row.phase ?? row.status;
        if (!seen.has(key)) seen.set(key, (Date.now() - Date.parse(row.created_at)) / 1000);
      }
      if (row?.progress && row.phase === 'transferring') samples.push(row.progress);
      if (row && TERMINAL_STATUSES.has(row.status)) break;
      if (Date.now() > deadline) throw new Error(`job ${jobId} did not end within 10 minutes (status ${row?.status})`);
      await sleep(100);
    }
    const agent = agentUsage();
    const hubU = hubUsage();
    const storage = storageUsage?.() ?? null;
    if (row.status !== 'succeeded') throw new Error(`job ${jobId} ${row.status}: ${row.error_code}: ${row.error_message}`);
    const seconds = (Date.parse(row.completed_at!) - Date.parse(row.created_at)) / 1000;
    const phases = [...seen].map(([phase, at]) => ({ phase, at: Math.min(at, seconds) }));
    return { row, seconds, agent, hub: hubU, storage, samples, phases };
  }

  /** Stops everything this rig started; safe to call more than once and after a failure. */
  async stop(): Promise<void> {
    const errors: unknown[] = [];
    const step = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err) {
        errors.push(err);
      }
    };
    if (this.agent) await step(async () => {
      const a = this.agent!;
      this.agent = null;
      const killer = setTimeout(() => void a.kill('SIGKILL'), 10_000);
      await a.kill('SIGTERM');
      clearTimeout(killer);
    });
    if (this.hub) await step(async () => {
      const h = this.hub!;
      this.hub = null;
      await h.stop();
    });
    if (this.qsd) await step(async () => {
      const q = this.qsd!;
      this.qsd = null;
      await q.destroy();
    });
    if (errors.length > 0) throw new AggregateError(errors, 'stopping the Backhaul rig failed');
  }

  /** Last resort at process exit: kill what still runs (synchronous). */
  killNow(): void {
    this.agent?.child.kill('SIGKILL');
    this.hub?.child.kill('SIGKILL');
    this.qsd?.proc?.kill('SIGKILL');
  }
}
