import type { AgentCredentials } from '../../agent/state.js';
import { query } from '../support/database.js';
import type { Proc } from '../support/processes.js';
import { cpuOver, memoryOf, openFdsOf, type CpuWindow } from './proc-stats.js';
import { SimulatedFleet } from './simulated-agents.js';

export interface IdleSample {
  /** VmRSS at the end of the window, bytes. */
  rss: number;
  /** Highest VmRSS sampled during the window, bytes. */
  maxRss: number;
  /** VmHWM: the process's peak RSS since it started (includes the connect storm), bytes. */
  peakRss: number;
  cpu: CpuWindow;
  openFds: number;
}

/** A process's RSS (sampled each second) and CPU over an idle window. */
export async function measureIdle(pid: number, windowMs: number): Promise<IdleSample> {
  let maxRss = memoryOf(pid).rss;
  const sampler = setInterval(() => (maxRss = Math.max(maxRss, memoryOf(pid).rss)), 1000);
  try {
    const cpu = await cpuOver(pid, windowMs);
    const mem = memoryOf(pid);
    return { rss: mem.rss, maxRss: Math.max(maxRss, mem.rss), peakRss: mem.peakRss, cpu, openFds: openFdsOf(pid) };
  } finally {
    clearInterval(sampler);
  }
}

export const onlineAgents = async (databaseUrl: string): Promise<number> =>
  Number((await query<{ n: string }>(databaseUrl, 'select count(*) as n from agents where online'))[0]!.n);

/** Waits until the database shows exactly `n` agents online. */
export async function waitForOnline(databaseUrl: string, n: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const online = await onlineAgents(databaseUrl);
    if (online === n || Date.now() > end) return online;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Row updates PostgreSQL has counted on the agents table (its statistics lag by up to a second or so). */
async function agentRowUpdates(databaseUrl: string): Promise<number> {
  const rows = await query<{ n: string }>(databaseUrl, "select n_tup_upd as n from pg_stat_user_tables where relname = 'agents'");
  return Number(rows[0]?.n ?? 0);
}

export interface IdleFleetResult {
  agents: number;
  connectSeconds: number;
  /** `select count(*) from agents where online` once all agents had their HelloAck. */
  onlineInDb: number;
  hub: IdleSample;
  /** The simulator (this process) while it held the fleet. */
  simulator: { rss: number; cpuPercentOfCore: number };
  /** Agent-table row updates PostgreSQL counted during the window: presence writes. */
  agentRowUpdatesInWindow: number;
  /** Heartbeats the fleet should have sent during the window. */
  expectedHeartbeats: number;
  reconnects: number;
  disconnectSeconds: number;
  onlineAfterDisconnect: number;
}

/**
 * Connects the whole fleet to the hub, checks the database shows every agent online, lets
 * the connect storm settle, then measures the hub process over an idle window with
 * heartbeats flowing. Disconnects the fleet before returning, whatever happens.
 */
export async function measureIdleFleet(o: {
  hub: Proc;
  hubAddress: string;
  databaseUrl: string;
  agents: AgentCredentials[];
  heartbeatIntervalMs: number;
  settleMs: number;
  windowMs: number;
}): Promise<IdleFleetResult> {
  const pid = o.hub.child.pid!;
  const fleet = new SimulatedFleet(o.agents, o.hubAddress);
  try {
    const { seconds: connectSeconds } = await fleet.connectAll();
    const onlineInDb = await waitForOnline(o.databaseUrl, o.agents.length, 30_000);
    await new Promise((r) => setTimeout(r, o.settleMs));

    const updates0 = await agentRowUpdates(o.databaseUrl);
    const simCpu0 = process.cpuUsage();
    const t0 = performance.now();
    const hub = await measureIdle(pid, o.windowMs);
    const simSeconds = (performance.now() - t0) / 1000;
    const simCpu = process.cpuUsage(simCpu0);
    const simRss = process.memoryUsage().rss;
    // PostgreSQL publishes table statistics with a delay; give it time to catch up.
    await new Promise((r) => setTimeout(r, 1500));
    const updates1 = await agentRowUpdates(o.databaseUrl);

    const reconnects = fleet.reconnects;
    const stopStarted = performance.now();
    await fleet.stopAll();
    const disconnectSeconds = (performance.now() - stopStarted) / 1000;
    const onlineAfterDisconnect = await waitForOnline(o.databaseUrl, 0, 30_000);
    return {
      agents: o.agents.length,
      connectSeconds,
      onlineInDb,
      hub,
      simulator: { rss: simRss, cpuPercentOfCore: ((simCpu.user + simCpu.system) / 1e6 / simSeconds) * 100 },
      agentRowUpdatesInWindow: updates1 - updates0,
      expectedHeartbeats: Math.round((o.agents.length * hub.cpu.seconds * 1000) / o.heartbeatIntervalMs),
      reconnects,
      disconnectSeconds,
      onlineAfterDisconnect,
    };
  } finally {
    await fleet.stopAll();
  }
}
