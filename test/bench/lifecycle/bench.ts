/**
 * The lifecycle benchmark (`npm run bench -- lifecycle`): the hub under 200 jobs running at once.
 *
 * A real hub process on a fresh database; BENCH_LC_AGENTS (50) simulated agents enrolled through
 * the real Enroll RPC, each with 4 targets and room for 4 jobs; one one-target flow per target,
 * created through REST with a token from `backhaul-hub api-token create`. Then:
 *   1. every flow is run (POST …/run, timed, one at a time), so all jobs run at once; each job
 *      reports rising bytes every second for BENCH_LC_JOB_SECONDS (30), puts a real index
 *      through the DataService and sends a succeeded final report;
 *   2. throughout, GET /api/v1/executions/:id of a random execution is timed, about 9 a second;
 *   3. over the steady window (every job running, none finishing) PostgreSQL's row-write counts
 *      are read, per job per second; the hub's RSS is sampled, its peak read from /proc;
 *   4. for each final report: when the hub acknowledged it, when a REST GET issued right after
 *      showed the job terminal, and when an SSE client on /api/v1/events received its terminal
 *      job.status event.
 * The peer, a bare fastify server on the same database (bare-rest-server.ts), answers the
 * same GETs and POSTs interleaved with the hub's, so both see the same load.
 *
 * Prints one Markdown table of ratios, then notes; progress goes to stderr. The hub, the peer,
 * the simulated agents and the database are removed on every way out.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { JobStatus } from '../../../shared/gen/backhaul/v1/agent.js';
import { SseClient, type SseEvent } from '../../lifecycle/sse-client.js';
import { createTestDatabase, query, type TestDatabase } from '../../support/database.js';
import { freePort, HUB_BIN, hubEnv, tempDir, type HubProcOptions } from '../../support/processes.js';
import { enrollFleet } from '../enrollment.js';
import { summarize, type LatencyStats } from '../hello-latency.js';
import { BenchHub } from '../hub-process.js';
import { cpuSecondsOf, memoryOf, MIB } from '../proc-stats.js';
import { count, markdownTable, mib, ms, ratio, verdict, type ResultRow } from '../results-table.js';
import { BareRestPeer } from './bare-rest-peer.js';
import { JobFleet } from './job-fleet.js';
import { RestClient } from './rest-client.js';
import type { FinalTiming } from './simulated-jobs.js';
import { tableWrites, writeRates, type WritesSample } from './table-writes.js';
import { withCleanup } from '../cleanup-guard.js';

const AGENTS = Number(process.env.BENCH_LC_AGENTS ?? 50);
const TARGETS_PER_AGENT = 4;
const JOBS = AGENTS * TARGETS_PER_AGENT;
const JOB_SECONDS = Number(process.env.BENCH_LC_JOB_SECONDS ?? 30);
const PROGRESS_INTERVAL_MS = 1000;
const GET_PAUSE_MS = 100;
/** Both servers get this many PostgreSQL connections (the hub's default pool). */
const POOL_MAX = 10;
const PEER_TABLE = 'bench_peer_runs';
const WRITES_SAMPLE_MS = 250;

const TARGET = { postRunMs: 50, finalToRestMs: 250, finalToSseMs: 250, getMs: 20, writesPerJobSecond: 1, rssBytes: 300 * MIB };
const TERMINAL_JOB = new Set(['succeeded', 'failed', 'cancelled']);

const started = performance.now();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
const progress = (msg: string) => process.stderr.write(`bench lifecycle [${elapsed()}] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);

interface JobRecord {
  flowId: string;
  executionId: string;
  jobId: string;
  final: FinalTiming | null;
  /** performance.now() when a REST GET answered with the job terminal, and the status it showed. */
  restAt: number | null;
  restStatus: string | null;
  restPolls: number;
  sseAt: number | null;
  sseStatus: string | null;
}

interface Measured {
  startRss: number;
  post: { hub: LatencyStats; peer: LatencyStats; badAnswers: string[] };
  get: { hub: LatencyStats; peer: LatencyStats };
  finalToAck: LatencyStats;
  finalToRest: LatencyStats;
  finalToSse: LatencyStats | null;
  jobs: JobRecord[];
  window: { seconds: number; runningJobs: number; writesPerSecond: [string, number][]; readings: number; hubCpuPercent: number };
  rss: { maxSampled: number; peak: number; peerRss: number };
  succeededExecutions: number;
  backups: number;
  reconnects: number;
  errors: string[];
  benchLoopDelayP99Ms: number;
  load: number[];
  hubLog: Map<string, number>;
}

export async function runLifecycle(): Promise<void> {
  let db: TestDatabase | null = null;
  let hub: BenchHub | null = null;
  let peer: BareRestPeer | null = null;
  let fleet: JobFleet | null = null;
  let sse: SseClient | null = null;
  let dataDir: string | null = null;
  const cleanup = async () => {
    if (sse) await sse.close().finally(() => (sse = null));
    if (fleet) await fleet.stopAll().finally(() => (fleet = null));
    if (hub) await hub.stop().finally(() => (hub = null));
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
    db = await createTestDatabase('bh_bench_lc');
    dataDir = await tempDir('bh-bench-lc');
    const hubOpts: HubProcOptions = { port: await freePort(), dataDir, databaseUrl: db.url, env: { BACKHAUL_HUB_DB_POOL_MAX: String(POOL_MAX) } };
    hub = await BenchHub.start({ ...hubOpts, logPath: join(dataDir, 'hub.log') });
    const hubAddress = `127.0.0.1:${hubOpts.port}`;
    const httpPort = hub.lines().find((l) => l.msg === 'hub started')!.http_port as number;
    const { stdout } = await run(process.execPath, [HUB_BIN, 'api-token', 'create', '--name', 'bench', '--role', 'admin', '--json'], { env: hubEnv(hubOpts) });
    const api = new RestClient(`http://127.0.0.1:${httpPort}`, (JSON.parse(stdout) as { token: string }).token);
    progress(`hub pid ${hub.pid} on ${hubAddress} (REST ${api.base}), database ${db.name}`);
    await sleep(1000);
    const startRss = memoryOf(hub.pid).rss;

    const enrolled = await enrollFleet({ hubAddress, databaseUrl: db.url, count: AGENTS });
    progress(`enrolled ${AGENTS} agents in ${enrolled.seconds.toFixed(1)} s; connecting them with ${TARGETS_PER_AGENT} targets each`);
    const errors: string[] = [];
    const records = new Map<string, JobRecord>();
    const restChecks: Promise<void>[] = [];
    fleet = new JobFleet(enrolled.agents, {
      hubAddress,
      targetsPerAgent: TARGETS_PER_AGENT,
      durationMs: JOB_SECONDS * 1000,
      progressIntervalMs: PROGRESS_INTERVAL_MS,
      onError: (err) => errors.push(err instanceof Error ? err.message : String(err)),
      onFinalAcked: (t) => {
        const r = records.get(t.jobId);
        if (!r) return void errors.push(`ack for the final report of an unknown job ${t.jobId}`);
        r.final = t;
        restChecks.push(restTerminal(api, r).catch((err: unknown) => void errors.push(`REST check of job ${r.jobId}: ${(err as Error).message}`)));
      },
    });
    await fleet.connectAll();
    const targets = await waitForTargets(api, JOBS);

    progress(`creating ${JOBS} one-target flows through REST`);
    const flowIds = await inParallel(targets, 8, async (t, i) => (await api.expect<{ id: string }>(201, 'POST', '/api/v1/flows', { name: `bench-flow-${i}`, target_ids: [t] })).body.id);
    peer = await BareRestPeer.start(db.url, POOL_MAX);
    const peerApi = new RestClient(peer.base);
    sse = new SseClient(`${api.base}/api/v1/events`, api.token);
    for (const end = Date.now() + 10_000; sse.status === 0 && Date.now() < end; ) await sleep(50); // status is set once the headers arrive
    if (sse.status !== 200) throw new Error(`GET /api/v1/events answered ${sse.status}`);

    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    let rssMax = memoryOf(hub.pid).rss;
    const hubPid = hub.pid;
    const rssSampler = setInterval(() => (rssMax = Math.max(rssMax, memoryOf(hubPid).rss)), 500);

    // Reads of random executions, hub then peer, from the first run until every job has ended.
    const getHub: number[] = [];
    const getPeer: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const known = [...records.values()];
        if (known.length > 0) {
          const e = known[Math.floor(Math.random() * known.length)]!.executionId;
          getHub.push((await api.expect(200, 'GET', `/api/v1/executions/${e}`)).ms);
          getPeer.push((await peerApi.expect(200, 'GET', `/executions/${e}`)).ms);
        }
        await sleep(GET_PAUSE_MS);
      }
    })();

    progress(`running ${JOBS} flows (POST …/run, each followed by the peer's insert)`);
    const postHub: number[] = [];
    const postPeer: number[] = [];
    const badAnswers: string[] = [];
    const firstRunAt = performance.now();
    for (const flowId of flowIds) {
      const r = await api.expect(202, 'POST', `/api/v1/flows/${flowId}/run`);
      postHub.push(r.ms);
      // DESIGN §1: started is not completed.
      if (r.body.status !== 'running' || r.body.completed_at !== null || r.body.job_counts?.total !== 1) badAnswers.push(JSON.stringify(r.body).slice(0, 200));
      const jobId = r.body.jobs[0].id as string;
      const rec: JobRecord = { flowId, executionId: r.body.id, jobId, final: null, restAt: null, restStatus: null, restPolls: 0, sseAt: null, sseStatus: null };
      records.set(jobId, rec);
      sse.waitFor((e: SseEvent) => e.event === 'job.status' && e.data.job_id === jobId && TERMINAL_JOB.has(e.data.status), (JOB_SECONDS + 120) * 1000).then(
        (e) => ((rec.sseAt = performance.now()), (rec.sseStatus = e.data.status as string)),
        () => undefined, // counted as missing below
      );
      postPeer.push((await peerApi.expect(202, 'POST', `/flows/${flowId}/run`)).ms);
    }
    const lastRunAt = performance.now();
    progress(`all ${JOBS} runs started in ${((lastRunAt - firstRunAt) / 1000).toFixed(1)} s (hub POST p99 ${ms(summarize(postHub).p99)})`);

    // The steady window: every job has reported, none has finished (the first ends JOB_SECONDS after its run).
    await sleep(2000);
    const windowEnd = firstRunAt + (JOB_SECONDS - 2) * 1000;
    if (windowEnd - performance.now() < 3000) throw new Error(`runs took too long to start (${((lastRunAt - firstRunAt) / 1000).toFixed(1)} s) for a steady window; raise BENCH_LC_JOB_SECONDS`);
    const runningAtStart = await runningJobs(db.url);
    const cpu0 = cpuSecondsOf(hubPid);
    const w0 = performance.now();
    progress(`steady window: ${runningAtStart} jobs running; reading PostgreSQL's write counts for ${((windowEnd - w0) / 1000).toFixed(1)} s`);
    const writeSamples: WritesSample[] = [];
    while (performance.now() < windowEnd) {
      writeSamples.push({ at: performance.now(), writes: await tableWrites(db.url) });
      await sleep(WRITES_SAMPLE_MS);
    }
    const windowSeconds = (performance.now() - w0) / 1000;
    const hubCpuPercent = ((cpuSecondsOf(hubPid) - cpu0) / windowSeconds) * 100;
    const runningAtEnd = await runningJobs(db.url);
    if (runningAtEnd !== runningAtStart) progress(`warning: ${runningAtStart} jobs running at the window's start, ${runningAtEnd} at its end`);

    progress('waiting for every final report, its REST check and its SSE event');
    const deadline = Date.now() + 90_000;
    const settled = () => [...records.values()].every((r) => r.final && r.restAt !== null && r.sseAt !== null);
    while (!settled() && Date.now() < deadline) await sleep(200);
    await Promise.all(restChecks);
    sampling = false;
    await sampler;
    clearInterval(rssSampler);
    loopDelay.disable();
    const peak = memoryOf(hubPid).peakRss;

    const jobs = [...records.values()];
    const finals = jobs.filter((r) => r.final?.ackedAt != null);
    const withRest = finals.filter((r) => r.restAt !== null);
    const withSse = finals.filter((r) => r.sseAt !== null);
    if (finals.length < jobs.length) errors.push(`${jobs.length - finals.length} final reports never acknowledged`);
    if (withSse.length < finals.length) errors.push(`${finals.length - withSse.length} terminal job.status events never received over SSE`);
    const [done] = await query<{ succeeded: string; backups: string }>(
      db.url,
      "select (select count(*) from executions where status = 'succeeded') as succeeded, (select count(*) from backups) as backups",
    );
    return {
      startRss,
      post: { hub: summarize(postHub), peer: summarize(postPeer), badAnswers },
      get: { hub: summarize(getHub), peer: summarize(getPeer) },
      finalToAck: summarize(finals.map((r) => r.final!.ackedAt! - r.final!.sentAt)),
      finalToRest: summarize(withRest.map((r) => r.restAt! - r.final!.sentAt)),
      finalToSse: withSse.length > 0 ? summarize(withSse.map((r) => r.sseAt! - r.final!.sentAt)) : null,
      jobs,
      window: { seconds: windowSeconds, runningJobs: Math.min(runningAtStart, runningAtEnd), writesPerSecond: writeRates(writeSamples, [PEER_TABLE]), readings: writeSamples.length, hubCpuPercent },
      rss: { maxSampled: rssMax, peak, peerRss: memoryOf(peer.pid).rss },
      succeededExecutions: Number(done!.succeeded),
      backups: Number(done!.backups),
      reconnects: fleet.reconnects,
      errors,
      benchLoopDelayP99Ms: loopDelay.percentile(99) / 1e6,
      load: loadavg(),
      hubLog: hub.problems(),
    };
  });
  report(m);
}

/** GETs the job's execution right after its final report was acknowledged, again until it shows the job terminal. */
async function restTerminal(api: RestClient, r: JobRecord): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const e = await api.expect(200, 'GET', `/api/v1/executions/${r.executionId}`);
    r.restPolls += 1;
    const job = (e.body.jobs as { id: string; status: string }[]).find((j) => j.id === r.jobId);
    if (job && TERMINAL_JOB.has(job.status)) {
      r.restAt = e.at;
      r.restStatus = job.status;
      return;
    }
    await sleep(10);
  }
  throw new Error('still not terminal after 100 reads');
}

async function waitForTargets(api: RestClient, n: number): Promise<string[]> {
  const end = Date.now() + 30_000;
  for (;;) {
    const items = (await api.expect<{ items: { id: string }[] }>(200, 'GET', '/api/v1/targets')).body.items;
    if (items.length >= n) return items.map((t) => t.id).slice(0, n);
    if (Date.now() > end) throw new Error(`only ${items.length} of ${n} targets reported after 30 s`);
    await sleep(250);
  }
}

const runningJobs = async (url: string) => Number((await query<{ n: string }>(url, "select count(*) as n from jobs where status = 'running'"))[0]!.n);

/** Maps items through fn, `concurrency` at a time, keeping their order. */
async function inParallel<T, R>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i]!, i);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return out;
}

function report(m: Measured): void {
  const n = m.jobs.length;
  const w = m.window;
  const perJobSecond = w.writesPerSecond.reduce((s, [, v]) => s + v, 0) / w.runningJobs;
  const latencyRow = (measure: string, v: LatencyStats | null, peer: LatencyStats | null, peerName: string, target: number): ResultRow => ({
    measure,
    backhaul: v ? ms(v.p99) : 'none received',
    peer: peer ? `${ms(peer.p99)} (${peerName})` : '',
    vsPeer: v && peer ? ratio(v.p99, peer.p99) : '',
    target: `≤ ${target} ms`,
    vsTarget: v ? ratio(v.p99, target) : '',
    verdict: verdict(v !== null && v.p99 <= target && v.samples === n),
  });
  const rows: ResultRow[] = [
    latencyRow(`POST /api/v1/flows/:id/run, p99 (${m.post.hub.samples} runs)`, m.post.hub, m.post.peer, 'bare fastify, insert in a transaction', TARGET.postRunMs),
    latencyRow(`final report → REST shows it terminal, p99 (${m.finalToRest.samples} jobs)`, m.finalToRest, null, '', TARGET.finalToRestMs),
    latencyRow(`final report → SSE client receives it, p99 (${m.finalToSse?.samples ?? 0} jobs)`, m.finalToSse, null, '', TARGET.finalToSseMs),
    { ...latencyRow(`GET /api/v1/executions/:id, p99 (${m.get.hub.samples} reads)`, m.get.hub, m.get.peer, 'bare fastify, one-row select', TARGET.getMs), verdict: verdict(m.get.hub.p99 <= TARGET.getMs) },
    {
      measure: `database row writes per job per second (${w.runningJobs} jobs, ${w.seconds.toFixed(1)} s steady window)`,
      backhaul: perJobSecond.toFixed(3),
      peer: '',
      vsPeer: '',
      target: `≤ ${TARGET.writesPerJobSecond}`,
      vsTarget: ratio(perJobSecond, TARGET.writesPerJobSecond),
      verdict: verdict(perJobSecond <= TARGET.writesPerJobSecond),
    },
    {
      measure: `hub peak RSS (VmHWM, ${n} jobs, ${count(m.jobs.length / TARGETS_PER_AGENT)} agents)`,
      backhaul: mib(m.rss.peak),
      peer: `${mib(m.startRss)} (hub at start, idle)`,
      vsPeer: ratio(m.rss.peak, m.startRss),
      target: `≤ ${mib(TARGET.rssBytes)}`,
      vsTarget: ratio(m.rss.peak, TARGET.rssBytes),
      verdict: verdict(m.rss.peak <= TARGET.rssBytes),
    },
    {
      measure: 'executions succeeded, with a committed backup each',
      backhaul: `${count(m.succeededExecutions)}, ${count(m.backups)} backups`,
      peer: '',
      vsPeer: '',
      target: `= ${count(n)}`,
      vsTarget: ratio(m.succeededExecutions, n),
      verdict: verdict(m.succeededExecutions === n && m.backups === n && m.post.badAnswers.length === 0),
    },
  ];

  const cpu = cpus();
  const st = (s: LatencyStats) => `p50 ${ms(s.p50)}, p99 ${ms(s.p99)}, max ${ms(s.max)}`;
  const polls = m.jobs.filter((r) => r.restAt !== null);
  const firstRead = polls.filter((r) => r.restPolls === 1).length;
  const notes = [
    `machine: ${cpu.length} cores (${cpu[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, load average at the end ${m.load.map((l) => l.toFixed(2)).join(' / ')}; the hub, PostgreSQL, the peer and the simulator (this process) share it`,
    `POST …/run: hub ${st(m.post.hub)}; peer ${st(m.post.peer)}; answers breaking DESIGN §1 (not running, completed_at set, wrong job count): ${m.post.badAnswers.length}`,
    `GET /api/v1/executions/:id: hub ${st(m.get.hub)}; peer ${st(m.get.peer)}`,
    `final report → hub's ack (sent after its transaction committed): ${st(m.finalToAck)}; → REST terminal ${st(m.finalToRest)}, terminal on the first read after the ack for ${firstRead} of ${polls.length}` +
      (m.finalToSse ? `; → SSE ${st(m.finalToSse)}` : ''),
    `row writes per second in the steady window (${w.seconds.toFixed(1)} s, ${w.runningJobs} jobs each reporting every ${PROGRESS_INTERVAL_MS / 1000} s; slope over ${w.readings} readings of pg_stat_user_tables), by table: ${w.writesPerSecond.map(([t, v]) => `${t} ${v.toFixed(1)}`).join(', ') || 'none'}; hub CPU ${w.hubCpuPercent.toFixed(0)} % of a core`,
    `hub RSS: ${mib(m.startRss)} at start, highest sampled during the runs ${mib(m.rss.maxSampled)}, peak ${mib(m.rss.peak)}; the bare fastify peer ${mib(m.rss.peerRss)}`,
    `this process's event-loop delay p99 ${m.benchLoopDelayP99Ms.toFixed(1)} ms (it times every request and runs every simulated agent, so this much of each latency may be its own); stream reconnects ${m.reconnects}`,
    `problems: ${m.errors.length === 0 ? 'none' : m.errors.slice(0, 5).join('; ')}${m.errors.length > 5 ? ` (+${m.errors.length - 5} more)` : ''}`,
    `hub log warnings/errors: ${m.hubLog.size === 0 ? 'none' : [...m.hubLog].map(([k, v]) => `${v}× ${k}`).join('; ')}`,
  ];
  process.stdout.write(`\n${markdownTable(rows)}\n\n${notes.map((l) => `- ${l}`).join('\n')}\n\n`);
  process.stdout.write(`Command: \`npm run bench -- lifecycle\` (this run: ${elapsed()} after the build).\n`);
}
