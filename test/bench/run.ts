/**
 * `npm run bench [-- control-plane | data-plane | lifecycle | cli]`: the benchmarks, all by default (or
 * the ones named in BENCH, comma-separated). The data-plane one lives in data-plane/bench.ts, the
 * lifecycle one (200 jobs at once: REST, SSE, database writes) in lifecycle/bench.ts, the CLI's
 * start-up in cli-startup.ts.
 *
 * The control-plane benchmark starts a real hub process on a fresh database,
 * enrolls a fleet of agents through the real Enroll RPC, then
 *   1. times connect + Hello → HelloAck over fresh mTLS connections, against a bare grpc-js
 *      server with the same TLS setup (the transport floor), interleaved in the same run;
 *   2. measures the hub's RSS and CPU with zero agents, then with the whole fleet connected
 *      and heartbeating, against the targets (400 MiB, 10 % of one core);
 *   3. stops the hub while the fleet is connected and counts agents the database still shows online;
 *   4. connects the same fleet to the bare grpc-js server and measures it the same way: the
 *      transport's own cost per connected agent.
 * Prints one Markdown table of ratios, for the README to quote. Progress goes to stderr.
 *
 * Knobs (environment): BENCH_AGENTS (2000), BENCH_HELLO_CONNECTS (200), BENCH_WINDOW_MS (30000).
 */
import { rm } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { freePort, tempDir } from '../support/processes.js';
import { BareHelloPeer } from './bare-hello-peer.js';
import { enrollFleet } from './enrollment.js';
import { measureHelloLatency, type HelloLatencyResult } from './hello-latency.js';
import { BenchHub, type HubStop } from './hub-process.js';
import { measureIdle, measureIdleFleet, onlineAgents, waitForOnline, type IdleFleetResult, type IdleSample } from './idle-fleet.js';
import { cpuSecondsOf, fdLimitOf, memoryOf, MIB } from './proc-stats.js';
import { count, kib, markdownTable, mib, ms, pct, ratio, verdict, type ResultRow } from './results-table.js';
import { SimulatedFleet } from './simulated-agents.js';
import { runDataPlane } from './data-plane/bench.js';
import { runLifecycle } from './lifecycle/bench.js';
import { runCliStartup } from './cli-startup.js';
import { withCleanup } from './cleanup-guard.js';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 2000);
const HELLO_CONNECTS = Number(process.env.BENCH_HELLO_CONNECTS ?? 200);
const HELLO_WARMUP = 10;
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 30_000);
const BASELINE_WINDOW_MS = Math.min(5_000, WINDOW_MS);
const PEER_WINDOW_MS = Math.min(15_000, WINDOW_MS);
const SETTLE_MS = 3_000;
/** The hub's default heartbeat interval, set explicitly so the fleet's heartbeats are the real ones. */
const HEARTBEAT_INTERVAL_MS = 10_000;

const TARGET = { helloMs: 20, rssBytes: 400 * MIB, cpuPercent: 10 };

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const progress = (msg: string) => process.stderr.write(`bench [${elapsed()}] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Measured {
  startRss: number;
  enroll: { seconds: number; hubCpuSeconds: number };
  hello: HelloLatencyResult;
  /** The hub, then the bare peer, idle with zero agents after the latency run. */
  idle: IdleSample;
  peerIdleRss: number;
  fleet: IdleFleetResult;
  hubStop: HubStop & { onlineAfter: number };
  hubLog: Map<string, number>;
  peerFleet: IdleFleetResult;
}

async function runControlPlane(): Promise<void> {
  const fdLimit = fdLimitOf(process.pid);
  // Each agent holds one socket here and one in the server (a child, with the same limit).
  if (fdLimit < AGENTS + 512) throw new Error(`open-file limit ${fdLimit} is too low for ${AGENTS} agents; raise it (ulimit -n ${AGENTS * 2 + 1024})`);

  let db: TestDatabase | null = null;
  let hub: BenchHub | null = null;
  let peer: BareHelloPeer | null = null;
  let fleet: SimulatedFleet | null = null;
  let dataDir: string | null = null;
  const cleanup = async () => {
    if (hub) await hub.stop().finally(() => (hub = null));
    if (fleet) await fleet.stopAll().finally(() => (fleet = null));
    if (peer) await peer.stop().finally(() => (peer = null));
    if (db) await db.drop().finally(() => (db = null));
    if (dataDir) await rm(dataDir, { recursive: true, force: true }).finally(() => (dataDir = null));
  };
  const m: Measured = await withCleanup({
    cleanup,
    // Should this process die without cleaning up, take the servers with it.
    killNow: () => {
      hub?.child.kill('SIGKILL');
      peer?.child.kill('SIGKILL');
    },
    progress,
  }, async () => {
    db = await createTestDatabase('bh_bench');
    dataDir = await tempDir('bh-bench');
    const port = await freePort();
    const hubAddress = `127.0.0.1:${port}`;
    hub = await BenchHub.start({
      port,
      dataDir,
      logPath: join(dataDir, 'hub.log'),
      databaseUrl: db.url,
      env: { BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS), LOG_LEVEL: 'info' },
    });
    const pid = hub.pid;
    progress(`hub pid ${pid} on ${hubAddress}, database ${db.name}, open-file limit ${fdLimitOf(pid)}`);
    await sleep(2000);
    const startRss = memoryOf(pid).rss;

    progress(`enrolling ${AGENTS} agents through the Enroll RPC`);
    const hubCpu0 = cpuSecondsOf(pid);
    const enrolled = await enrollFleet({ hubAddress, databaseUrl: db.url, count: AGENTS });
    const enroll = { seconds: enrolled.seconds, hubCpuSeconds: cpuSecondsOf(pid) - hubCpu0 };
    progress(`enrolled ${enrolled.agents.length} agents in ${enrolled.seconds.toFixed(1)} s`);

    peer = await BareHelloPeer.start(db.url);
    progress(`timing ${HELLO_CONNECTS} connects to the hub and to the bare grpc-js peer (+${HELLO_WARMUP} warm-up each)`);
    const hello = await measureHelloLatency({ hub, hubAddress, peer, agents: enrolled.agents, count: HELLO_CONNECTS, warmup: HELLO_WARMUP });
    progress(`hello p50: hub ${ms(hello.hub.p50)}, peer ${ms(hello.peer.p50)}`);

    const stillOnline = await waitForOnline(db.url, 0, 30_000);
    if (stillOnline !== 0) throw new Error(`${stillOnline} agents still online after the latency run`);
    progress(`measuring the idle hub with zero agents for ${BASELINE_WINDOW_MS / 1000} s`);
    const idle = await measureIdle(pid, BASELINE_WINDOW_MS);
    const peerIdleRss = memoryOf(peer.pid).rss;

    progress(`connecting ${AGENTS} simulated agents to the hub, then measuring ${WINDOW_MS / 1000} s idle`);
    fleet = new SimulatedFleet(enrolled.agents, hubAddress);
    const result = await measureIdleFleet(fleet, {
      server: hub,
      databaseUrl: db.url,
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      settleMs: SETTLE_MS,
      windowMs: WINDOW_MS,
    });
    progress(`hub with ${AGENTS} agents: RSS ${mib(result.server.rss)}, CPU ${pct(result.server.cpu.percentOfCore)} of a core`);

    progress(`stopping the hub (SIGTERM) with ${AGENTS} agents connected`);
    const h = hub;
    hub = null;
    const exit = await h.stop();
    const onlineAfter = await onlineAgents(db.url);
    const hubLog = h.problems();
    await fleet.stopAll();
    fleet = null;

    progress(`connecting the same ${AGENTS} agents to the bare grpc-js peer, then measuring ${PEER_WINDOW_MS / 1000} s idle`);
    fleet = new SimulatedFleet(enrolled.agents, peer.address);
    const peerFleet = await measureIdleFleet(fleet, { server: peer, heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, settleMs: SETTLE_MS, windowMs: PEER_WINDOW_MS });
    return { startRss, enroll, hello, idle, peerIdleRss, fleet: result, hubStop: { ...exit, onlineAfter }, hubLog, peerFleet };
  });
  report(m);
}

function report(m: Measured): void {
  const { hello, idle, fleet, peerFleet } = m;
  const n = count(fleet.agents);
  const hub = fleet.server;
  const perAgent = (hub.rss - idle.rss) / fleet.agents;
  const peerPerAgent = (peerFleet.server.rss - m.peerIdleRss) / peerFleet.agents;
  const perAgentBudget = (TARGET.rssBytes - idle.rss) / fleet.agents;
  const connects = `${hello.hub.samples} fresh mTLS connects`;
  const helloRow = (k: 'p50' | 'p99'): ResultRow => ({
    measure: `connect + Hello → HelloAck, ${k} (${connects})`,
    backhaul: ms(hello.hub[k]),
    peer: `${ms(hello.peer[k])} (bare grpc-js)`,
    vsPeer: ratio(hello.hub[k], hello.peer[k]),
    target: `≤ ${TARGET.helloMs} ms`,
    vsTarget: ratio(hello.hub[k], TARGET.helloMs),
    verdict: verdict(hello.hub[k] <= TARGET.helloMs),
  });
  const rows: ResultRow[] = [
    helloRow('p50'),
    helloRow('p99'),
    {
      measure: 'the hub’s share of it: Backhaul − peer per pair, p50',
      backhaul: ms(hello.paired.p50),
      peer: '',
      vsPeer: '',
      target: `≤ ${TARGET.helloMs} ms`,
      vsTarget: ratio(hello.paired.p50, TARGET.helloMs),
      verdict: verdict(hello.paired.p50 <= TARGET.helloMs),
    },
    {
      measure: `hub RSS, ${n} agents idle`,
      backhaul: mib(hub.rss),
      peer: `${mib(idle.rss)} (hub, 0 agents)`,
      vsPeer: ratio(hub.rss, idle.rss),
      target: `< ${mib(TARGET.rssBytes)}`,
      vsTarget: ratio(hub.rss, TARGET.rssBytes),
      verdict: verdict(hub.rss < TARGET.rssBytes),
    },
    {
      measure: 'RSS per connected agent (over 0 agents)',
      backhaul: kib(perAgent),
      peer: `${kib(peerPerAgent)} (bare grpc-js)`,
      vsPeer: ratio(perAgent, peerPerAgent),
      target: `< ${kib(perAgentBudget)} (left by the RSS target)`,
      vsTarget: ratio(perAgent, perAgentBudget),
      verdict: verdict(perAgent < perAgentBudget),
    },
    {
      measure: `CPU, ${n} agents idle (heartbeat ${HEARTBEAT_INTERVAL_MS / 1000} s)`,
      backhaul: `${pct(hub.cpu.percentOfCore)} of a core`,
      peer: `${pct(peerFleet.server.cpu.percentOfCore)} (bare grpc-js)`,
      vsPeer: ratio(hub.cpu.percentOfCore, peerFleet.server.cpu.percentOfCore),
      target: `< ${TARGET.cpuPercent} % of a core`,
      vsTarget: ratio(hub.cpu.percentOfCore, TARGET.cpuPercent),
      verdict: verdict(hub.cpu.percentOfCore < TARGET.cpuPercent),
    },
    {
      measure: 'agents online in the database',
      backhaul: count(fleet.onlineInDb ?? 0),
      peer: '',
      vsPeer: '',
      target: `= ${n}`,
      vsTarget: ratio(fleet.onlineInDb ?? 0, fleet.agents),
      verdict: verdict(fleet.onlineInDb === fleet.agents),
    },
    {
      measure: `agents still online after a graceful hub stop (SIGTERM, ${n} connected)`,
      backhaul: count(m.hubStop.onlineAfter),
      peer: '',
      vsPeer: '',
      target: '= 0',
      vsTarget: '',
      verdict: verdict(m.hubStop.onlineAfter === 0),
    },
  ];

  const cpu = cpus();
  const stop = m.hubStop;
  const notes = [
    `machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), Node ${process.version}; the hub, PostgreSQL, the peer and the simulator share it`,
    `enrollment: ${n} Enroll RPCs in ${m.enroll.seconds.toFixed(1)} s (${(fleet.agents / m.enroll.seconds).toFixed(0)}/s, 16 in flight); hub CPU ${((m.enroll.hubCpuSeconds / fleet.agents) * 1000).toFixed(1)} ms per enrollment`,
    `hello latency: mean ${ms(hello.hub.mean)} (peer ${ms(hello.peer.mean)}), max ${ms(hello.hub.max)} (peer ${ms(hello.peer.max)}); ` +
      `Backhaul − peer per pair p99 ${ms(hello.paired.p99)}; creating the agent's client (TLS context, channel) is ${ms(hello.clientSetupP50)} of each (p50); ` +
      `fresh TLS connections (distinct client certificates accepted): hub ${hello.hubConnections}/${hello.connects}, peer ${hello.peerConnections}/${hello.connects}`,
    `hub with ${n} agents: online in ${fleet.connectSeconds.toFixed(1)} s (32 handshakes in flight), reconnects ${fleet.reconnects}; ` +
      `RSS ${mib(m.startRss)} at start, ${mib(idle.rss)} with 0 agents after enrollment, ${mib(hub.rss)} with ${n} (max in window ${mib(hub.maxRss)}, peak since start ${mib(hub.peakRss)}); ` +
      `CPU with 0 agents ${pct(idle.cpu.percentOfCore)}; window ${hub.cpu.seconds.toFixed(0)} s; open fds ${hub.openFds}`,
    `bare grpc-js peer with ${n} agents: RSS ${mib(m.peerIdleRss)} → ${mib(peerFleet.server.rss)}; window ${peerFleet.server.cpu.seconds.toFixed(0)} s`,
    `presence writes: PostgreSQL counted ${count(fleet.agentRowUpdatesInWindow ?? 0)} agent row updates in the window, for ~${count(fleet.expectedHeartbeats)} heartbeats`,
    `simulator (this process: ${n} agents, each agent/connection.ts with its own client): RSS ${mib(fleet.simulator.rss)}, CPU ${pct(fleet.simulator.cpuPercentOfCore)} of a core`,
    `hub stop with ${n} agents connected: ${stop.gracefulSeconds === null ? 'no "hub stopped" logged' : `"hub stopped" ${stop.gracefulSeconds.toFixed(1)} s after SIGTERM`}, exit ${stop.code ?? stop.signal}`,
    `hub log warnings/errors: ${m.hubLog.size === 0 ? 'none' : [...m.hubLog].map(([k, v]) => `${v}× ${k}`).join('; ')}`,
  ];

  process.stdout.write(`\n${markdownTable(rows)}\n\n${notes.map((l) => `- ${l}`).join('\n')}\n\n`);
  process.stdout.write(`Command: \`npm run bench\` (this run: ${elapsed()} after the build).\n`);
}

const BENCHES = { 'control-plane': runControlPlane, 'data-plane': runDataPlane, lifecycle: runLifecycle, cli: runCliStartup } as const;
type BenchName = keyof typeof BENCHES;

/** The benchmarks named on the command line or in BENCH (comma-separated); all of them by default. */
function selected(): BenchName[] {
  const names = [...process.argv.slice(2), ...(process.env.BENCH ?? '').split(',')].map((s) => s.trim()).filter(Boolean);
  if (names.length === 0 || names.includes('all')) return Object.keys(BENCHES) as BenchName[];
  const unknown = names.filter((n) => !(n in BENCHES));
  if (unknown.length > 0) throw new Error(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}`);
  return (Object.keys(BENCHES) as BenchName[]).filter((n) => names.includes(n));
}

(async () => {
  for (const name of selected()) {
    progress(`running the ${name} benchmark`);
    await BENCHES[name]();
  }
})().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
