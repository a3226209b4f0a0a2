/**
 * Flows run through REST on the real system: a hub process, agent processes with the file
 * driver on raw images, real PostgreSQL. What is asserted is what an operator sees: the answer
 * of "run now", progress while it runs, the final status and counts, and the truth rules of
 * DESIGN §1 over the whole database after every test.
 */
import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../support/database.js';
import { eventually, tempDir } from '../support/processes.js';
import { runningExecutions } from './invariants.js';
import { fileTarget, MiB, rawImage, Stack, type StackAgent } from './stack.js';

let stack: Stack;
let dir: string;
/** Three agents with 20 small targets each, and one with a large, slowly read one. */
const fleet: { agent: StackAgent; targets: Map<string, string> }[] = [];
let slow: { agent: StackAgent; targetId: string };

beforeAll(async () => {
  stack = await Stack.start();
  dir = await tempDir('bh-life-images');
  for (let a = 0; a < 3; a++) {
    const targets = [];
    for (let t = 0; t < 20; t++) targets.push(fileTarget(`vm-${a}-${t}`, await rawImage(dir, `vm-${a}-${t}`, 4, t % 2 === 0 ? 4 : 1)));
    const agent = await stack.addAgent(targets, { BACKHAUL_AGENT_MAX_JOBS: '4' }, `fleet-${a}`);
    fleet.push({ agent, targets: await stack.targetsOf(agent.id) });
  }
  // 96 MiB read at 16 MiB/s: about six seconds of transfer, so progress can be watched.
  const slowAgent = await stack.addAgent([fileTarget('big-vm', await rawImage(dir, 'big-vm', 128, 96))], { BACKHAUL_AGENT_READ_LIMIT_BPS: String(16 * MiB) }, 'slow');
  slow = { agent: slowAgent, targetId: (await stack.targetsOf(slowAgent.id)).get('big-vm')! };
  // One run first, so "run now" is timed on a warm hub, as operators meet it, not on its first JIT pass.
  await stack.finish((await stack.runFlow(await stack.createFlow('warm-up', [fleet[0]!.targets.get('vm-0-0')!]), 1)).id);
});

afterEach(async () => {
  await stack.checkTruth();
});

afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** n targets spread round-robin across the three fleet agents. */
function spread(n: number): string[] {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(fleet[i % 3]!.targets.get(`vm-${i % 3}-${Math.floor(i / 3)}`)!);
  return ids;
}

describe('run now', () => {
  it('answers 202 in under 100 ms with a running execution; progress rises strictly between 0 and 100; it ends succeeded with exact counts', async () => {
    const flow = await stack.createFlow('big', [slow.targetId]);
    const run = await stack.runFlow(flow, 1);
    expect(run.ms).toBeLessThan(100);
    expect(run.body.job_counts).toMatchObject({ total: 1, succeeded: 0, failed: 0, cancelled: 0 });

    const transferring: number[] = [];
    const done = await stack.finish(run.id, 60_000, (e) => {
      const j = e.jobs[0]!;
      if (e.status === 'running' && j.phase === 'transferring') transferring.push(e.percent);
    });
    // The first poll of the phase may come before its first chunk: 0 until then.
    const distinct = [...new Set(transferring.slice(transferring.findIndex((p) => p > 0)))];
    expect(distinct.length, `percents seen while transferring: ${transferring.join(', ')}`).toBeGreaterThanOrEqual(3);
    for (const p of distinct) {
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(100);
    }
    expect(distinct).toEqual([...distinct].sort((a, b) => a - b));

    expect(done.status).toBe('succeeded');
    expect(done.completed_at).not.toBeNull();
    expect(done.percent).toBe(100);
    expect(done.bytes_done).toBeGreaterThan(0);
    expect(done.job_counts).toMatchObject({ total: 1, succeeded: 1, failed: 0, cancelled: 0 });
    expect(done.jobs[0]).toMatchObject({ status: 'succeeded', percent: 100, error_code: null, backup_id: expect.any(String) });
    const backup = await stack.api('GET', `/api/v1/backups/${done.jobs[0]!.backup_id}`);
    expect(backup.status).toBe(200);
    expect(backup.body.bytes_total).toBe(128 * MiB);
  });

  it('answers 409 with the running execution while the flow runs', async () => {
    // Independent of the test before: its run of the same target must have ended.
    await eventually(async () => (await runningExecutions(stack.db.url)).length === 0, 60_000, 'no execution running');
    const flow = await stack.createFlow('big-twice', [slow.targetId]);
    const run = await stack.runFlow(flow, 1);
    const again = await stack.api('POST', `/api/v1/flows/${flow}/run`);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'FLOW_ALREADY_RUNNING', details: { execution_id: run.id } });
    expect((await stack.finish(run.id)).status).toBe('succeeded');
  });
});

describe('many targets across several agents', () => {
  for (const n of [1, 7, 50]) {
    it(`a flow of ${n} target${n > 1 ? 's' : ''} ends exactly when its last job ends, with exact counts`, async () => {
      const flow = await stack.createFlow(`fleet-${n}`, spread(n));
      const run = await stack.runFlow(flow, n);
      const done = await stack.finish(run.id, 120_000, (e) => {
        // While any job is live, the execution is running.
        if (e.jobs.some((j) => !['succeeded', 'failed', 'cancelled'].includes(j.status))) expect(e.status).toBe('running');
      });
      expect(done.status, JSON.stringify(done.jobs.filter((j) => j.status !== 'succeeded'))).toBe('succeeded');
      expect(done.job_counts).toMatchObject({ total: n, succeeded: n, failed: 0, cancelled: 0, queued: 0, running: 0 });
      expect(done.jobs).toHaveLength(n);
      const last = Math.max(...done.jobs.map((j) => Date.parse(j.completed_at!)));
      // The last job's terminal move and the execution's are one transaction.
      expect(Date.parse(done.completed_at!)).toBe(last);
      expect(new Set(done.jobs.map((j) => j.agent_id)).size).toBe(Math.min(n, 3));
      const flowView = (await stack.api('GET', `/api/v1/flows/${flow}`)).body;
      expect(flowView.statistics).toMatchObject({ executions_total: 1, succeeded: 1, last_execution_status: 'succeeded' });
    });
  }

  it('runs no more jobs at once on an agent than it declares', async () => {
    const rows = await query<{ agent_id: string; peak: number }>(
      stack.db.url,
      `select j.agent_id, max(c.n)::int as peak from jobs j
         join lateral (select count(*) as n from jobs k where k.agent_id = j.agent_id and k.started_at is not null
                          and k.started_at <= j.started_at and k.completed_at > j.started_at) c on true
        where j.started_at is not null group by j.agent_id`,
    );
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const r of rows) expect(r.peak).toBeLessThanOrEqual(4);
  });
});

describe('outcomes', () => {
  it('mixed outcomes give partial; all failed gives failed; each failed job names its error', async () => {
    // Two images vanish after the agent reported them: their backups fail on the agent.
    const gone = await rawImage(dir, 'gone-1', 4);
    const gone2 = await rawImage(dir, 'gone-2', 4);
    const ok = await rawImage(dir, 'ok-1', 4);
    const agent = await stack.addAgent([fileTarget('gone-1', gone), fileTarget('gone-2', gone2), fileTarget('ok-1', ok)], {}, 'mixed');
    const t = await stack.targetsOf(agent.id);
    await rm(gone);
    await rm(gone2);

    const mixed = await stack.finish((await stack.runFlow(await stack.createFlow('mixed', [t.get('gone-1')!, t.get('ok-1')!]), 2)).id);
    expect(mixed.status).toBe('partial');
    expect(mixed.job_counts).toMatchObject({ total: 2, succeeded: 1, failed: 1 });
    const failed = mixed.jobs.find((j) => j.status === 'failed')!;
    expect(failed.error_code).toBe('AGENT_ERROR');
    expect(failed.error_message).toMatch(/gone-1/);

    const allFailed = await stack.finish((await stack.runFlow(await stack.createFlow('all-failed', [t.get('gone-1')!, t.get('gone-2')!]), 2)).id);
    expect(allFailed.status).toBe('failed');
    expect(allFailed.job_counts).toMatchObject({ total: 2, succeeded: 0, failed: 2 });
    expect(allFailed.completed_at).not.toBeNull();
  });

  it('a flow with no targets gets 422 and no execution is created', async () => {
    const flow = await stack.createFlow('empty', []);
    const before = await query(stack.db.url, 'select count(*)::int as n from executions');
    const r = await stack.api('POST', `/api/v1/flows/${flow}/run`);
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ code: 'FLOW_HAS_NO_TARGETS', message: expect.stringContaining('no targets') });
    expect(await query(stack.db.url, 'select count(*)::int as n from executions')).toEqual(before);
    expect(await runningExecutions(stack.db.url)).toEqual([]);
  });
});
