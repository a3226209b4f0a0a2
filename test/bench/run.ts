/**
 * `npm run bench`: the foundation benchmark. Starts a real hub process on a fresh database,
 * enrolls a fleet of agents through the real Enroll RPC, then
 *   1. times connect + Hello → HelloAck over fresh mTLS connections, against a bare grpc-js
 *      server with the same TLS setup (the transport floor), interleaved in the same run;
 *   2. measures the hub's RSS and CPU with zero agents (the peer), then with the whole fleet
 *      connected and heartbeating, against the targets (400 MiB, 10 % of one core).
 * Prints one Markdown table of ratios, for the README to quote. Progress goes to stderr.
 *
 * Knobs (environment): BENCH_AGENTS (2000), BENCH_HELLO_CONNECTS (200), BENCH_WINDOW_MS (30000).
 */
import { rm } from 'node:fs/promises';
import { cpus } from 'node:os';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { freePort, startHub, tempDir, type Proc } from '../support/processes.js';
import { enrollFleet } from './enrollment.js';
import { measureHelloLatency, type HelloLatencyResult } from './hello-latency.js';
import { measureIdle, measureIdleFleet, waitForOnline, type IdleFleetResult, type IdleSample } from './idle-fleet.js';
import { fdLimitOf, memoryOf, MIB } from './proc-stats.js';
import { count, kib, markdownTable, mib, ms, pct, ratio, verdict, type ResultRow } from './results-table.js';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 2000);
const HELLO_CONNECTS = Number(process.env.BENCH_HELLO_CONNECTS ?? 200);
const HELLO_WARMUP = 20;
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 30_000);
const BASELINE_WINDOW_MS = Math.min(10_000, WINDOW_MS);
const SETTLE_MS = 5_000;
/** The hub's default heartbeat interval, set explicitly so the fleet's heartbeats are the real ones. */
const HEARTBEAT_INTERVAL_MS = 10_000;

const TARGET = { helloMs: 20, rssBytes: 400 * MIB, cpuPercent: 10 };

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const progress = (msg: string) => process.stderr.write(`bench [${elapsed()}] ${msg}\n`);

interface Measured {
  startRss: number;
  enrollSeconds: number;
  hello: HelloLatencyResult;
  idle: IdleSample;
  fleet: IdleFleetResult;
  hubLogProblems: Map<string, number>;
  hubStop: { seconds: number; code: number | null; signal: string | null };
}

async function main(): Promise<void> {
  const fdLimit = fdLimitOf(process.pid);
  // Each agent is one socket here and one in the hub (a child, with the same limit).
  if (fdLimit < AGENTS + 512) throw new Error(`open-file limit ${fdLimit} is too low for ${AGENTS} agents; raise it (ulimit -n ${AGENTS * 2 + 1024})`);

  let db: TestDatabase | null = null;
  let hub: Proc | null = null;
  let dataDir: string | null = null;
  const cleanup = async () => {
    if (hub) {
      const h = hub;
      hub = null;
      const kill = setTimeout(() => h.kill('SIGKILL'), 15_000);
      await h.kill('SIGTERM');
      clearTimeout(kill);
    }
    if (db) await db.drop().finally(() => (db = null));
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    progress('interrupted; cleaning up');
    cleanup().finally(() => process.exit(130));
  });

  let m: Measured;
  try {
    db = await createTestDatabase('bh_bench');
    dataDir = await tempDir('bh-bench');
    const port = await freePort();
    const hubAddress = `127.0.0.1:${port}`;
    hub = await startHub({ port, dataDir, databaseUrl: db.url, env: { BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS), LOG_LEVEL: 'info' } });
    const pid = hub.child.pid!;
    progress(`hub pid ${pid} on ${hubAddress}, database ${db.name}, open-file limit ${fdLimitOf(pid)}`);
    await new Promise((r) => setTimeout(r, 2000));
    const startRss = memoryOf(pid).rss;

    progress(`enrolling ${AGENTS} agents through the Enroll RPC`);
    const enrolled = await enrollFleet({ hubAddress, databaseUrl: db.url, count: AGENTS });
    progress(`enrolled ${enrolled.agents.length} agents in ${enrolled.seconds.toFixed(1)} s`);

    progress(`timing ${HELLO_CONNECTS} connects to the hub and to the bare grpc-js peer (+${HELLO_WARMUP} warm-up each)`);
    const hello = await measureHelloLatency({ hub, hubAddress, databaseUrl: db.url, agents: enrolled.agents, count: HELLO_CONNECTS, warmup: HELLO_WARMUP });
    progress(`hello p50 hub ${ms(hello.hub.p50)}, peer ${ms(hello.peer.p50)}`);

    const offline = await waitForOnline(db.url, 0, 30_000);
    if (offline !== 0) throw new Error(`${offline} agents still online after the latency run`);
    progress(`measuring the idle hub with zero agents for ${BASELINE_WINDOW_MS / 1000} s`);
    const idle = await measureIdle(pid, BASELINE_WINDOW_MS);

    progress(`connecting ${AGENTS} simulated agents, then measuring ${WINDOW_MS / 1000} s idle`);
    const fleet = await measureIdleFleet({
      hub,
      hubAddress,
      databaseUrl: db.url,
      agents: enrolled.agents,
      heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS,
      settleMs: SETTLE_MS,
      windowMs: WINDOW_MS,
    });
    progress(`fleet: hub RSS ${mib(fleet.hub.rss)}, CPU ${pct(fleet.hub.cpu.percentOfCore)}`);

    const hubLogProblems = new Map<string, number>();
    for (const l of hub.lines) {
      if (typeof l.level === 'number' && l.level >= 40) {
        const key = `${l.level >= 50 ? 'error' : 'warn'}: ${String(l.msg)}${l.code ? ` (${String(l.code)})` : ''}`;
        hubLogProblems.set(key, (hubLogProblems.get(key) ?? 0) + 1);
      }
    }
    const h = hub;
    hub = null;
    const stopStarted = performance.now();
    const exit = await h.kill('SIGTERM');
    m = { startRss, enrollSeconds: enrolled.seconds, hello, idle, fleet, hubLogProblems, hubStop: { seconds: (performance.now() - stopStarted) / 1000, ...exit } };
  } finally {
    await cleanup();
  }
  report(m);
}

function report(m: Measured): void {
  const { hello, idle, fleet } = m;
  const n = count(fleet.agents);
  const perAgent = (fleet.hub.rss - idle.rss) / fleet.agents;
  const helloRow = (label: string, k: 'p50' | 'p99'): ResultRow => ({
    measure: `connect + Hello → HelloAck, ${label} (${hello.hub.samples} fresh mTLS connects)`,
    backhaul: ms(hello.hub[k]),
    peer: `${ms(hello.peer[k])} (bare grpc-js)`,
    vsPeer: ratio(hello.hub[k], hello.peer[k]),
    target: `≤ ${TARGET.helloMs} ms`,
    vsTarget: ratio(hello.hub[k], TARGET.helloMs),
    verdict: verdict(hello.hub[k] <= TARGET.helloMs),
  });
  const rows: ResultRow[] = [
    helloRow('p50', 'p50'),
    helloRow('p99', 'p99'),
    {
      measure: `hub RSS, ${n} agents idle`,
      backhaul: mib(fleet.hub.rss),
      peer: `${mib(idle.rss)} (0 agents)`,
      vsPeer: ratio(fleet.hub.rss, idle.rss),
      target: `< ${mib(TARGET.rssBytes)}`,
      vsTarget: ratio(fleet.hub.rss, TARGET.rssBytes),
      verdict: verdict(fleet.hub.rss < TARGET.rssBytes),
    },
    {
      measure: 'hub RSS per connected agent (over 0 agents)',
      backhaul: kib(perAgent),
      peer: '',
      vsPeer: '',
      target: `< ${kib((TARGET.rssBytes - idle.rss) / fleet.agents)} (what the RSS target leaves)`,
      vsTarget: ratio(perAgent, (TARGET.rssBytes - idle.rss) / fleet.agents),
      verdict: '',
    },
    {
      measure: `hub CPU, ${n} agents idle (${(fleet.hub.cpu.seconds).toFixed(0)} s, heartbeat ${HEARTBEAT_INTERVAL_MS / 1000} s)`,
      backhaul: `${pct(fleet.hub.cpu.percentOfCore)} of a core`,
      peer: `${pct(idle.cpu.percentOfCore)} (0 agents)`,
      vsPeer: ratio(fleet.hub.cpu.percentOfCore, idle.cpu.percentOfCore),
      target: `< ${TARGET.cpuPercent} % of a core`,
      vsTarget: ratio(fleet.hub.cpu.percentOfCore, TARGET.cpuPercent),
      verdict: verdict(fleet.hub.cpu.percentOfCore < TARGET.cpuPercent),
    },
    {
      measure: 'agents online in the database',
      backhaul: count(fleet.onlineInDb),
      peer: '',
      vsPeer: '',
      target: `= ${n}`,
      vsTarget: ratio(fleet.onlineInDb, fleet.agents),
      verdict: verdict(fleet.onlineInDb === fleet.agents),
    },
  ];

  const notes = [
    `machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}; hub and PostgreSQL ${'(local)'} share it with the simulator`,
    `enrollment: ${n} Enroll RPCs in ${m.enrollSeconds.toFixed(1)} s (${(fleet.agents / m.enrollSeconds).toFixed(0)}/s, 16 in flight)`,
    `hello latency: mean ${ms(hello.hub.mean)} (peer ${ms(hello.peer.mean)}), max ${ms(hello.hub.max)} (peer ${ms(hello.peer.max)}); ` +
      `fresh connections seen: hub ${hello.hubConnections}/${hello.connects}, peer ${hello.peerConnections}/${hello.connects}`,
    `fleet connect: ${n} agents online in ${fleet.connectSeconds.toFixed(1)} s (32 handshakes in flight); disconnect in ${fleet.disconnectSeconds.toFixed(1)} s, then ${fleet.onlineAfterDisconnect} online`,
    `hub RSS: ${mib(m.startRss)} at start, ${mib(idle.rss)} idle with 0 agents after enrollment; ` +
      `with ${n} agents ${mib(fleet.hub.rss)} (max in window ${mib(fleet.hub.maxRss)}, peak since start ${mib(fleet.hub.peakRss)}); hub open fds ${fleet.hub.openFds}`,
    `presence writes: PostgreSQL counted ${count(fleet.agentRowUpdatesInWindow)} agent row updates in the window, for ~${count(fleet.expectedHeartbeats)} heartbeats`,
    `simulator (this process, ${n} agents/agent/connection.ts clients): RSS ${mib(fleet.simulator.rss)}, CPU ${pct(fleet.simulator.cpuPercentOfCore)} of a core`,
    `reconnects during the run: ${fleet.reconnects}; hub stop after the run: ${m.hubStop.seconds.toFixed(1)} s, exit ${m.hubStop.code ?? m.hubStop.signal}`,
    `hub log warnings/errors: ${m.hubLogProblems.size === 0 ? 'none' : [...m.hubLogProblems].map(([k, v]) => `${v}× ${k}`).join('; ')}`,
  ];

  process.stdout.write(`\n${markdownTable(rows)}\n\n${notes.map((l) => `- ${l}`).join('\n')}\n\n`);
  process.stdout.write(`Command: \`npm run bench\` (whole run ${elapsed()}).\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
