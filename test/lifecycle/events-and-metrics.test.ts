/**
 * The live event stream (GET /api/v1/events) and Prometheus metrics (GET /metrics) on the
 * real system: a hub process, a real agent with the file driver, real PostgreSQL.
 */
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../support/database.js';
import { tempDir } from '../support/processes.js';
import { SseClient, type SseEvent } from './sse-client.js';
import { fileTarget, MiB, rawImage, Stack } from './stack.js';

const METRICS_TOKEN = 'prometheus-scrape-token-0123456789';
let stack: Stack;
let dir: string;
let slowTarget: string;
const clients: SseClient[] = [];

beforeAll(async () => {
  stack = await Stack.start({ BACKHAUL_HUB_SSE_HEARTBEAT_MS: '300', BACKHAUL_HUB_METRICS_TOKEN: METRICS_TOKEN });
  dir = await tempDir('bh-events');
  // 48 MiB at 8 MiB/s: six seconds of progress.
  const agent = await stack.addAgent([fileTarget('slow', await rawImage(dir, 'slow', 64, 48))], { BACKHAUL_AGENT_READ_LIMIT_BPS: String(8 * MiB) }, 'events-agent');
  slowTarget = (await stack.targetsOf(agent.id)).get('slow')!;
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await stack.checkTruth();
});

afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function sse(path: string, lastEventId?: string, token = stack.token): SseClient {
  const c = new SseClient(stack.base + path, token, lastEventId);
  clients.push(c);
  return c;
}

const isEnd = (e: SseEvent) => e.event === 'execution.status' && e.data.status !== 'running';

describe('GET /api/v1/events', () => {
  it('streams running, rising progress and succeeded for a real backup, in order; a reconnect with Last-Event-ID misses nothing', async () => {
    const flow = await stack.createFlow('sse', [slowTarget]);
    const whole = sse(`/api/v1/events?flow_id=${flow}`);
    const first = sse(`/api/v1/events?flow_id=${flow}`);
    await new Promise((r) => setTimeout(r, 500));
    expect(whole.status).toBe(200);

    const run = await stack.runFlow(flow, 1);
    await first.waitFor((e) => e.event === 'job.progress' && e.data.percent > 0);
    const resumeFrom = first.lastId!;
    await first.close();
    // Events go on while it is away.
    await new Promise((r) => setTimeout(r, 1_500));
    const second = sse(`/api/v1/events?flow_id=${flow}`, resumeFrom);
    await whole.waitFor(isEnd);
    await second.waitFor(isEnd);

    const ids = (evs: SseEvent[]) => evs.map((e) => e.id);
    expect([...ids(first.events), ...ids(second.events)]).toEqual(ids(whole.events));
    expect(second.events.length).toBeGreaterThan(0);

    const evs = whole.events;
    const at = (pred: (e: SseEvent) => boolean) => evs.findIndex(pred);
    const running = at((e) => e.event === 'execution.status' && e.data.status === 'running' && e.data.execution_id === run.id);
    const jobDone = at((e) => e.event === 'job.status' && e.data.status === 'succeeded');
    const done = at((e) => e.event === 'execution.status' && e.data.status === 'succeeded');
    expect(running).toBeGreaterThanOrEqual(0);
    expect(jobDone).toBeGreaterThan(running);
    expect(done).toBeGreaterThan(jobDone);
    const progress = evs.slice(running, jobDone).filter((e) => e.event === 'job.progress').map((e) => e.data.percent as number);
    expect(new Set(progress.filter((p) => p > 0 && p < 100)).size).toBeGreaterThanOrEqual(2);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.every((p) => p < 100)).toBe(true);
    // Progress at most once a second per job (the hub writes it at most every 1.5 s; some slack for jitter).
    const times = evs.filter((e) => e.event === 'job.progress').map((e) => Date.parse(e.data.at));
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1_000);
    // What the last event claims is what the database holds.
    expect((await query(stack.db.url, 'select status, completed_at from executions where id = $1', [run.id]))[0]!.status).toBe(evs[done]!.data.status);
    expect(whole.comments).toBeGreaterThanOrEqual(3); // heartbeats
  });

  it('filters by execution and job, and says "refetch" for a Last-Event-ID it cannot resume from', async () => {
    const flow = await stack.createFlow('sse-filters', [slowTarget]);
    const run = await stack.runFlow(flow, 1);
    const jobId = run.body.jobs[0]!.id;
    const byJob = sse(`/api/v1/events?job_id=${jobId}`);
    const byExecution = sse(`/api/v1/events?execution_id=${run.id}`);
    const stale = sse(`/api/v1/events?execution_id=${run.id}`, '0badc0de-1');
    await byExecution.waitFor(isEnd);
    await byJob.waitFor((e) => e.event === 'job.status' && e.data.status === 'succeeded');
    expect(byJob.events.every((e) => e.data.job_id === jobId)).toBe(true);
    expect(byExecution.events.every((e) => e.data.execution_id === run.id)).toBe(true);
    expect(stale.events[0]).toMatchObject({ event: 'refetch', data: { type: 'refetch', reason: expect.stringContaining('not from this run') } });
  });

  it('needs a token, and names a bad filter', async () => {
    const none = await fetch(`${stack.base}/api/v1/events`);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    const bad = await stack.api('GET', '/api/v1/events?flow=abc');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'flow' } });
    const notUuid = await stack.api('GET', '/api/v1/events?job_id=12');
    expect(notUuid.body).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'job_id' } });
  });
});

/** Parses Prometheus text exposition strictly: every line a comment or a sample. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.eE+-]+|NaN|[+-]Inf)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    samples.set(m[1]!, Number(m[2]));
  }
  return samples;
}

describe('GET /metrics', () => {
  it('serves Prometheus text whose numbers match the database after runs', async () => {
    const watching = sse('/api/v1/events');
    const flow = await stack.createFlow('metrics', [slowTarget]);
    expect((await stack.finish((await stack.runFlow(flow, 1)).id)).status).toBe('succeeded');

    const res = await fetch(`${stack.base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const m = parsePrometheus(await res.text());

    const count = async (sql: string) => Number((await query<{ n: string }>(stack.db.url, sql))[0]!.n);
    expect(m.get('backhaul_agents_online')).toBe(await count('select count(*) as n from agents where online'));
    expect(m.get('backhaul_jobs{kind="backup",status="succeeded"}')).toBe(await count(`select count(*) as n from jobs where kind = 'backup' and status = 'succeeded'`));
    expect(m.get('backhaul_executions{status="succeeded"}')).toBe(await count(`select count(*) as n from executions where status = 'succeeded'`));
    expect(m.get('backhaul_transferred_bytes')).toBe(await count(`select sum((progress->>'bytesTransferred')::float8) as n from jobs where kind = 'backup'`));
    expect(m.get('backhaul_transferred_bytes')).toBeGreaterThanOrEqual(48 * MiB);
    expect(m.get('backhaul_backup_duration_seconds_count')).toBe(await count(`select count(*) as n from jobs where kind = 'backup' and status = 'succeeded'`));
    expect(m.get('backhaul_run_now_latency_seconds_count')).toBe(await count(`select count(*) as n from executions where trigger = 'api'`));
    expect(m.get('backhaul_event_stream_clients')).toBe(1);
    expect(m.get('backhaul_reconciler_fixes_total') ?? 0).toBe(0);
    expect(m.get('backhaul_db_pool_connections{state="used"}')).toBeGreaterThanOrEqual(0);
    expect(m.get('process_cpu_seconds_total')).toBeGreaterThan(0);
    await watching.close();

    // API tokens work too; nothing else does.
    expect((await fetch(`${stack.base}/metrics`, { headers: { authorization: `Bearer ${stack.token}` } })).status).toBe(200);
    expect((await fetch(`${stack.base}/metrics`)).status).toBe(401);
    expect((await fetch(`${stack.base}/metrics`, { headers: { authorization: 'Bearer not-the-metrics-token' } })).status).toBe(401);
  });
});
