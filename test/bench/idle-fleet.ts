import { query } from '../support/database.js';
import { cpuOver, memoryOf, openFdsOf, type CpuWindow } from './proc-stats.js';
import { SimulatedFleet } from './simulated-agents.js';

export interface IdleSample {
  /** VmRSS at the end of the window, bytes. */
  rss: number;
  /** Highest VmRSS sampled (each second) during the window, bytes. */
  maxRss: number;
  /** VmHWM: the process's peak RSS since it started (includes the connect storm), bytes. */
  peakRss: number;
  cpu: CpuWindow;
  openFds: number;
}

/** A process's RSS and CPU over an idle window. */
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

/** Waits until the database shows exactly `n` agents online; returns the last count seen. */
export async function waitForOnline(databaseUrl: string, n: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const online = await onlineAgents(databaseUrl);
    if (online === n || Date.now() > end) return online;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Row updates PostgreSQL has counted on the agents table (its statistics lag by about a second). */
async function agentRowUpdates(databaseUrl: string): Promise<number> {
  const rows = await query<{ n: string }>(databaseUrl, "select n_tup_upd as n from pg_stat_user_tables where relname = 'agents'");
  return Number(rows[0]?.n ?? 0);
}

export interface IdleFleetResult {
  agents: number;
  connectSeconds: number;
  /** `select count(*) from agents where online` once every agent had its HelloAck (null without a database). */
  onlineInDb: number | null;
  /** The server process the fleet is connected to. */
  server: IdleSample;
  /** The simulator (this process) while it held the fleet. */
  simulator: { rss: number; cpuPercentOfCore: number };
  /** Agent-table row updates PostgreSQL counted during the window: the presence writes (null without a database). */
  agentRowUpdatesInWindow: number | null;
  /** Heartbeats the fleet should have sent during the window. */
  expectedHeartbeats: number;
  /** Streams the fleet had to open again during connect, settle and window. */
  reconnects: number;
}

/**
 * Connects the whole fleet to a server (the hub, or the bare peer), checks that the database
 * shows every agent online (for the hub), lets the connect storm settle, then measures the
 * server process over an idle window with heartbeats flowing. The fleet stays connected; the
 * caller stops it.
 */
export async function measureIdleFleet(
  fleet: SimulatedFleet,
  o: { server: { pid: number }; databaseUrl?: string; heartbeatIntervalMs: number; settleMs: number; windowMs: number },
): Promise<IdleFleetResult> {
  const pid = o.server.pid;
  const { seconds: connectSeconds } = await fleet.connectAll();
  const onlineInDb = o.databaseUrl ? await waitForOnline(o.databaseUrl, fleet.agents.length, 30_000) : null;
  await new Promise((r) => setTimeout(r, o.settleMs));

  const updates0 = o.databaseUrl ? await agentRowUpdates(o.databaseUrl) : 0;
  const simCpu0 = process.cpuUsage();
  const t0 = performance.now();
  const server = await measureIdle(pid, o.windowMs);
  const simSeconds = (performance.now() - t0) / 1000;
  const simCpu = process.cpuUsage(simCpu0);
  const simRss = process.memoryUsage().rss;
  let updates: number | null = null;
  if (o.databaseUrl) {
    // PostgreSQL publishes table statistics with a delay; give it time to catch up.
    await new Promise((r) => setTimeout(r, 1500));
    updates = (await agentRowUpdates(o.databaseUrl)) - updates0;
  }
  return {
    agents: fleet.agents.length,
    connectSeconds,
    onlineInDb,
    server,
    simulator: { rss: simRss, cpuPercentOfCore: ((simCpu.user + simCpu.system) / 1e6 / simSeconds) * 100 },
    agentRowUpdatesInWindow: updates,
    expectedHeartbeats: Math.round((fleet.agents.length * server.cpu.seconds * 1000) / o.heartbeatIntervalMs),
    reconnects: fleet.reconnects,
  };
}

