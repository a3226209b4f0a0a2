/**
 * The scheduler and retention on the real system: hub processes on real PostgreSQL, a real
 * agent with the file driver. Schedules use seconds-level cron expressions ("*\/2 * * * * *"),
 * so ticks come every second or two of real time instead of a test clock.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionDetailView, ExecutionView, FlowTickView, FlowView } from '../../hub/lifecycle/read-model.js';
import { query } from '../support/database.js';
import { eventually, freePort, startHub, tempDir, type Proc } from '../support/processes.js';
import { fileTarget, MiB, rawImage, Stack, type StackAgent } from './stack.js';

const SCHEDULER = { BACKHAUL_HUB_SCHEDULER_INTERVAL_MS: '200', BACKHAUL_HUB_CATCH_UP_AFTER_MS: '1500' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let stack: Stack;
let dir: string;
let agent: StackAgent;
let targets: Map<string, string>;
const extraHubs: Proc[] = [];

beforeAll(async () => {
  dir = await tempDir('bh-sched');
  // Both hubs of the two-hub test share one repository, as hubs on one database must.
  stack = await Stack.start({ ...SCHEDULER, BACKHAUL_HUB_REPOSITORY: join(dir, 'repository') });
  const images = [];
  for (const name of ['fast-a', 'fast-b', 'fast-c', 'fast-d', 'fast-e', 'kept']) images.push(fileTarget(name, await rawImage(dir, name, 4, 1)));
  images.push(fileTarget('slow', await rawImage(dir, 'slow', 40)));
  agent = await stack.addAgent(images, { BACKHAUL_AGENT_MAX_JOBS: '4' }, 'sched-agent');
  targets = await stack.targetsOf(agent.id);
});

afterEach(async () => {
  await stack.checkTruth();
});

afterAll(async () => {
  await Promise.all(extraHubs.map((h) => h.kill('SIGKILL')));
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function createScheduled(name: string, target: string, cron: string, extra: Record<string, unknown> = {}): Promise<FlowView> {
  const r = await stack.api<FlowView>('POST', '/api/v1/flows', { name, target_ids: [targets.get(target)!], schedule: { cron, timezone: 'Europe/Paris' }, ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body;
}

const executionsOf = async (flowId: string) => (await stack.api<{ items: ExecutionView[] }>('GET', `/api/v1/executions?flow_id=${flowId}&limit=500`)).body.items;
const historyOf = async (flowId: string) => (await stack.api<{ items: FlowTickView[] }>('GET', `/api/v1/flows/${flowId}/history`)).body.items;
const disable = async (flowId: string) => expect((await stack.api('POST', `/api/v1/flows/${flowId}/disable`)).status).toBe(200);

/** Disables the flow and waits until nothing of it runs, so later tests see a quiet hub. */
async function settle(flowId: string): Promise<void> {
  await disable(flowId);
  await eventually(async () => (await executionsOf(flowId)).every((e) => e.status !== 'running'), 60_000, 'the flow to stop');
}

describe('scheduler', () => {
  it('runs a flow at its tick with trigger=scheduled, and keeps next_run_at on the next tick', async () => {
    const flow = await createScheduled('every-2s', 'fast-a', '*/2 * * * * *');
    expect(flow.next_run_at).not.toBeNull();
    const first = Date.parse(flow.next_run_at!);
    expect(first % 2000).toBe(0);
    expect(first).toBeGreaterThan(Date.now() - 500);
    expect(first).toBeLessThanOrEqual(Date.now() + 2000);

    const [run] = await eventually(async () => {
      const list = await executionsOf(flow.id);
      return list.length > 0 ? list : null;
    }, 10_000, 'a scheduled run');
    expect(run).toMatchObject({ trigger: 'scheduled', scheduled_for: new Date(first).toISOString(), catch_up: false });
    const done = await stack.finish(run!.id);
    expect(done.status).toBe('succeeded');
    const after = (await stack.api<FlowView>('GET', `/api/v1/flows/${flow.id}`)).body;
    expect(Date.parse(after.next_run_at!)).toBeGreaterThan(first);
    expect(Date.parse(after.next_run_at!) % 2000).toBe(0);
    const [tick] = (await historyOf(flow.id)).slice(-1);
    expect(tick).toMatchObject({ tick_at: new Date(first).toISOString(), outcome: 'started', execution_id: run!.id, missed_ticks: 0 });
    await settle(flow.id);
  });

  it('never fires a disabled flow; enabling it sets next_run_at from now', async () => {
    const flow = await createScheduled('disabled', 'fast-b', '* * * * * *', { enabled: false });
    expect(flow.next_run_at).toBeNull();
    await sleep(3_000);
    expect(await executionsOf(flow.id)).toEqual([]);
    expect(await historyOf(flow.id)).toEqual([]);
    const enabled = (await stack.api<FlowView>('POST', `/api/v1/flows/${flow.id}/enable`)).body;
    expect(Date.parse(enabled.next_run_at!)).toBeGreaterThan(Date.now() - 1000);
    const runs = await eventually(async () => ((await executionsOf(flow.id)).length > 0 ? executionsOf(flow.id) : null), 10_000, 'a run once enabled');
    // No catch-up for the seconds it was disabled.
    expect(runs.every((e) => !e.catch_up)).toBe(true);
    await settle(flow.id);
    expect((await stack.api<FlowView>('GET', `/api/v1/flows/${flow.id}`)).body.next_run_at).toBeNull();
  });

  it('records a tick that finds the flow still running as skipped, naming the running execution; runs never overlap', async () => {
    // 40 MiB at 8 MiB/s: each run lasts about five seconds, across two ticks of a 2 s schedule.
    await stack.agents[0]!.proc.kill('SIGTERM');
    await agent.restart({ BACKHAUL_AGENT_READ_LIMIT_BPS: String(8 * MiB) });
    const flow = await createScheduled('overlap', 'slow', '*/2 * * * * *');
    const skipped = await eventually(async () => (await historyOf(flow.id)).find((t) => t.outcome === 'skipped') ?? null, 20_000, 'a skipped tick');
    expect(skipped.reason).toMatch(/^FLOW_ALREADY_RUNNING: /);
    const running = (await stack.execution(skipped.execution_id!)) as ExecutionDetailView;
    expect(Date.parse(running.started_at)).toBeLessThan(Date.parse(skipped.tick_at));
    await settle(flow.id);
    await stack.agents[0]!.proc.kill('SIGTERM');
    await agent.restart();

    const runs = await executionsOf(flow.id);
    const history = await historyOf(flow.id);
    // Every tick is accounted for: a run, or a skip while another run of the flow was live.
    expect(history.filter((t) => t.outcome === 'started').map((t) => t.execution_id).sort()).toEqual(runs.map((e) => e.id).sort());
    const spans = runs.map((e) => [Date.parse(e.started_at), Date.parse(e.completed_at!)] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
    for (const t of history.filter((h) => h.outcome === 'skipped')) {
      const e = runs.find((r) => r.id === t.execution_id)!;
      expect(Date.parse(e.started_at)).toBeLessThanOrEqual(Date.parse(t.recorded_at));
      expect(Date.parse(e.completed_at!)).toBeGreaterThanOrEqual(Date.parse(t.recorded_at));
    }
  });

  it('gives exactly one catch-up run for the ticks missed while the hub was down', async () => {
    const flow = await createScheduled('catch-up', 'fast-c', '*/2 * * * * *');
    await eventually(async () => ((await executionsOf(flow.id)).some((e) => e.status === 'succeeded') ? true : null), 15_000, 'a first run');
    await disable(flow.id);
    await eventually(async () => (await executionsOf(flow.id)).every((e) => e.status !== 'running'), 30_000, 'quiet');
    await stack.api('POST', `/api/v1/flows/${flow.id}/enable`);
    // Down for about seven seconds: three or four ticks are missed.
    await stack.hub.kill('SIGTERM');
    const downAt = Date.now();
    await sleep(7_000);
    await stack.startHub();
    const upAt = Date.now();
    const catchUp = await eventually(async () => (await executionsOf(flow.id)).find((e) => e.catch_up) ?? null, 15_000, 'the catch-up run');
    expect(catchUp.trigger).toBe('scheduled');
    expect(Date.parse(catchUp.scheduled_for!)).toBeGreaterThanOrEqual(downAt - 2_000);
    expect(Date.parse(catchUp.scheduled_for!)).toBeLessThan(upAt);
    const ended = await stack.finish(catchUp.id);
    // Failed once in a full run under load (not reproduced alone or in pairs): say why if it does again.
    const why = JSON.stringify(ended.jobs.map((j) => ({ status: j.status, error_code: j.error_code, error_message: j.error_message })));
    expect(ended.status, `the catch-up run's jobs: ${why}`).toBe('succeeded');
    await settle(flow.id);
    const history = await historyOf(flow.id);
    const catchUps = history.filter((t) => t.outcome === 'catch_up');
    expect(catchUps).toHaveLength(1);
    expect(catchUps[0]!.missed_ticks).toBeGreaterThanOrEqual(3);
    // No tick of the downtime ran besides that one.
    const duringDown = (await executionsOf(flow.id)).filter((e) => !e.catch_up && Date.parse(e.scheduled_for!) > downAt && Date.parse(e.scheduled_for!) < upAt);
    expect(duringDown.map((e) => e.id)).toEqual([]);
  });

  it('two hubs on one database start each tick once', async () => {
    const other = await startHub({ port: await freePort(), dataDir: await tempDir('bh-sched-hub2'), databaseUrl: stack.db.url, env: { ...stack.hubOpts.env } }, 'hub-2');
    extraHubs.push(other);
    const flow = await createScheduled('two-hubs', 'fast-d', '* * * * * *');
    await sleep(8_000);
    await settle(flow.id);
    const ticks = await query<{ tick_at: Date; n: number }>(
      stack.db.url,
      `select scheduled_for as tick_at, count(*)::int as n from executions where flow_id = $1 group by scheduled_for`,
      [flow.id],
    );
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(ticks.filter((t) => t.n > 1)).toEqual([]);
    const history = await historyOf(flow.id);
    expect(new Set(history.map((t) => t.tick_at)).size).toBe(history.length);
    // Across both hubs' logs, each tick was acted on exactly once.
    const acted = [stack.hub, other].flatMap((h) => h.lines.filter((l) => l.flow_id === flow.id && (l.msg === 'scheduled run started' || l.msg === 'scheduled tick skipped')));
    expect(acted.map((l) => l.tick_at).sort()).toEqual(history.map((t) => t.tick_at).sort());
    await other.kill('SIGTERM');
  });

  it('refuses an invalid cron expression or time zone with 400 naming the field', async () => {
    const bad = [
      [{ cron: '61 * * * *', timezone: 'UTC' }, 'schedule.cron'],
      [{ cron: 'every day', timezone: 'UTC' }, 'schedule.cron'],
      [{ cron: '0 2 * * *', timezone: 'Mars/Olympus' }, 'schedule.timezone'],
    ] as const;
    for (const [schedule, field] of bad) {
      const r = await stack.api('POST', '/api/v1/flows', { name: `bad-${field}-${schedule.cron}`, schedule });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field } });
    }
  });
});

describe('retention', () => {
  it("after each successful execution, prunes by the flow's policy as a hub job; kept backups still verify; GC frees the chunks", async () => {
    const flow = (await stack.api<FlowView>('POST', '/api/v1/flows', { name: 'kept', target_ids: [targets.get('kept')!], retention: { keep_last: 2 } })).body;
    const backups: string[] = [];
    for (let i = 0; i < 4; i++) {
      // A new 1 MiB of data each time, so each backup names one chunk of its own.
      await rawImage(dir, 'kept', 4, 1);
      const run = await stack.runFlow(flow.id, 1);
      const done = await stack.finish(run.id);
      expect(done.status).toBe('succeeded');
      backups.push(done.jobs[0]!.backup_id!);
      const detail = await eventually(async () => {
        const e = await stack.execution(run.id);
        return e.retention_jobs.length === 1 && ['succeeded', 'failed'].includes(e.retention_jobs[0]!.status) ? e : null;
      }, 20_000, 'the retention job');
      expect(detail.retention_jobs[0]).toMatchObject({ kind: 'prune', status: 'succeeded', result: { backupsRemoved: i < 2 ? 0 : 1 } });
    }
    const left = (await stack.api<{ items: { id: string }[] }>('GET', `/api/v1/backups?target_id=${targets.get('kept')}`)).body.items.map((b) => b.id);
    expect(left.sort()).toEqual(backups.slice(2).sort());

    // Garbage collection on its own schedule (every 2 s here, for a hub restarted with it).
    stack.hubOpts.env = { ...stack.hubOpts.env, BACKHAUL_HUB_GC_SCHEDULE: '*/2 * * * * *', BACKHAUL_HUB_GC_GRACE_MS: '1000' };
    await stack.hub.kill('SIGTERM');
    await stack.startHub();
    const gcJob = await eventually(async () => {
      const [t] = await query<{ job_id: string | null }>(stack.db.url, `select job_id from maintenance_ticks where kind = 'gc' and job_id is not null order by tick_at limit 1`);
      if (!t?.job_id) return null;
      const j = await stack.job(t.job_id);
      return ['succeeded', 'failed'].includes(j.status) ? j : null;
    }, 20_000, 'a scheduled garbage collection');
    // The two pruned backups each named a chunk no other backup names.
    expect(gcJob).toMatchObject({ kind: 'gc', status: 'succeeded' });
    expect((gcJob.result as { removedChunks: number }).removedChunks).toBeGreaterThanOrEqual(2);
    expect((gcJob.result as { removedBytes: number }).removedBytes).toBeGreaterThan(0);

    for (const id of left) {
      const v = await stack.api('POST', `/api/v1/backups/${id}/verify`);
      expect(v.status).toBe(202);
      const job = await eventually(async () => {
        const j = await stack.job(v.body.id);
        return ['succeeded', 'failed'].includes(j.status) ? j : null;
      }, 20_000, 'verify');
      expect(job).toMatchObject({ status: 'succeeded', result: { corrupt: [], missing: [] }, percent: 100 });
      // Its last progress is kept: all it checked.
      expect(job.bytes_done).toBeGreaterThan(0);
      expect(job.bytes_done).toBe(job.bytes_total);
    }
  });
});
