import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { AgentList, Backup, BackupPage, ExecutionDetail, ExecutionPage, Flow, FlowList, Job, JobLog, Target, TargetList, Agent } from '../../hub/rest/schemas.js';
import { query } from '../support/database.js';
import { api, insertAgent, insertBackup, insertExecution, insertFlow, insertJob, insertTarget, startRestHub, type RestHub } from './rest-support.js';

let h: RestHub;
const get = (path: string) => api(h, h.tokens.viewer, 'GET', path);

/** The body matches the documented schema exactly: parsing strips unknown keys, so equality also rules out extra ones. */
function expectShape<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const parsed = schema.parse(body);
  expect(parsed).toEqual(body);
  return parsed;
}

// The world the read routes are checked against, inserted as rows.
const w = {} as {
  online: string;
  disabled: string;
  offline: string;
  t1: { id: string; ref: string };
  t2: { id: string; ref: string };
  flow: string;
  otherFlow: string;
  running: string;
  older: string;
  failedExecution: string;
  jobs: Record<'succeeded' | 'failed' | 'running' | 'queued' | 'stalled', string>;
  backups: { b1: string; b2: string; orphan: string };
};

beforeAll(async () => {
  // Quiet: the monitor would otherwise mark these jobs (whose agents are not connected) stalled.
  h = await startRestHub({ quiet: true });
  const url = h.db.url;
  w.online = await insertAgent(url, { name: 'a-online', online: true });
  w.disabled = await insertAgent(url, { name: 'b-disabled', disabled: true });
  w.offline = await insertAgent(url, { name: 'c-offline', version: null });
  w.t1 = await insertTarget(url, w.online, { ref: 'vm-1', name: 'web', disks: [{ name: 'vda', path: '/vm/vda', sizeBytes: 1000 }, { name: 'vdb', path: '/vm/vdb', sizeBytes: 3000 }] });
  w.t2 = await insertTarget(url, w.online, { ref: 'vm-2', name: 'db' });
  w.flow = await insertFlow(url, { name: 'nightly', targetIds: [w.t1.id, w.t2.id], stats: { total: 4, succeeded: 3, partial: 0, failed: 1, cancelled: 0 } });
  w.otherFlow = await insertFlow(url, { name: 'weekly' });

  w.older = await insertExecution(url, { flowId: w.flow, flowName: 'nightly', status: 'succeeded', total: 1, succeeded: 1, createdAt: new Date(Date.now() - 3_600_000) });
  await insertJob(url, { agentId: w.online, targetRef: 'vm-1', executionId: w.older, status: 'succeeded', progress: { bytesTotal: 4000, bytesDone: 4000 } });
  w.failedExecution = await insertExecution(url, { flowId: w.otherFlow, flowName: 'weekly', status: 'failed', total: 0, createdAt: new Date(Date.now() - 60_000) });

  // The running execution: five jobs, one in each situation the rules distinguish.
  w.running = await insertExecution(url, { flowId: w.flow, flowName: 'nightly', status: 'running', total: 5, succeeded: 1, failed: 1 });
  const e = { executionId: w.running, agentId: w.online };
  w.jobs = {
    succeeded: await insertJob(url, { ...e, targetRef: 'vm-1', status: 'succeeded', plannedDisks: [500], progress: { bytesTotal: 500, bytesDone: 500 } }),
    // Terminal: stale phase and stall marks are not shown; percent is what was done.
    failed: await insertJob(url, { ...e, targetRef: 'vm-2', status: 'failed', phase: 'transferring', plannedDisks: [1000], progress: { bytesTotal: 1000, bytesDone: 500 }, stalledAt: new Date(), stallReason: 'the agent is disconnected' }),
    running: await insertJob(url, {
      ...e,
      targetRef: 'vm-1',
      status: 'running',
      phase: 'transferring',
      plannedDisks: [1000, 3000],
      progress: {
        bytesTotal: 4000,
        bytesDone: 2000,
        bytesRead: 1800,
        bytesZero: 200,
        bytesTransferred: 1500,
        bytesReused: 300,
        rateBytesPerSecond: 100,
        etaSeconds: 20,
        busy: { sourceRead: 0.3, hashCompress: 0.1, network: 0.8, hubWrite: 0.5 },
      },
    }),
    // Not reported yet: its total is the plan, so the execution total is known from the start.
    queued: await insertJob(url, { ...e, targetRef: 'vm-3', status: 'queued', plannedDisks: [1500, 500] }),
    // Everything read, not yet committed: 99, not 100.
    stalled: await insertJob(url, { ...e, targetRef: 'vm-4', status: 'cancelling', phase: 'finalizing', plannedDisks: [3000], progress: { bytesTotal: 3000, bytesDone: 3000 }, stalledAt: new Date(), stallReason: 'no report for 60 s' }),
  };
  for (const [i, line] of ['backup job queued', 'dispatched', 'transferring'].entries()) {
    await query(url, `insert into job_logs (job_id, level, message, fields) values ($1, $2, $3, $4)`, [w.jobs.running, i === 2 ? 'warn' : 'info', line, i === 2 ? { disk: 'vda' } : null]);
  }

  const backupJob = () => insertJob(url, { agentId: w.online, targetRef: 'vm-1', status: 'succeeded', progress: { bytesTotal: 1, bytesDone: 1 } });
  w.backups = {
    b1: await insertBackup(url, { jobId: await backupJob(), agentId: w.online, targetRef: 'vm-1', createdAt: new Date(Date.now() - 3000) }),
    b2: await insertBackup(url, { jobId: await backupJob(), agentId: w.online, targetRef: 'vm-2', createdAt: new Date(Date.now() - 2000) }),
    orphan: await insertBackup(url, { jobId: await backupJob(), agentId: w.offline, targetRef: 'no-such-target', createdAt: new Date(Date.now() - 1000) }),
  };
});

afterAll(async () => {
  await h?.close();
});

describe('REST read routes', () => {
  it('agents: status from online and disabled, capabilities in snake_case, running job count', async () => {
    const list = expectShape(AgentList, (await get('/api/v1/agents')).body);
    expect(list.items.map((a) => [a.name, a.status, a.online])).toEqual([
      ['a-online', 'online', true],
      ['b-disabled', 'disabled', false],
      ['c-offline', 'offline', false],
    ]);
    const one = expectShape(Agent, (await get(`/api/v1/agents/${w.online}`)).body);
    // running and cancelling count; queued and ended jobs do not.
    expect(one.running_jobs).toBe(2);
    expect(one.capabilities).toEqual({ drivers: ['qemu', 'file'], max_concurrent_jobs: 2 });
    expect(list.items.find((a) => a.id === w.offline)!.version).toBeNull();
  });

  it('targets: list, filter by agent, one target with its disks', async () => {
    const all = expectShape(TargetList, (await get('/api/v1/targets')).body);
    expect(all.items.map((t) => t.name).sort()).toEqual(['db', 'web']);
    const none = expectShape(TargetList, (await get(`/api/v1/targets?agent_id=${w.offline}`)).body);
    expect(none.items).toEqual([]);
    const t = expectShape(Target, (await get(`/api/v1/targets/${w.t1.id}`)).body);
    expect(t).toMatchObject({ agent_id: w.online, ref: 'vm-1', driver: 'qemu', source: 'inventory', options: { qmp: '/run/qmp.sock' } });
    expect(t.disks).toEqual([
      { name: 'vda', path: '/vm/vda', size_bytes: 1000 },
      { name: 'vdb', path: '/vm/vdb', size_bytes: 3000 },
    ]);
  });

  it('flows: targets, schedule, retention and statistics with success_rate', async () => {
    const list = expectShape(FlowList, (await get('/api/v1/flows')).body);
    expect(list.items.map((f) => f.name)).toEqual(['nightly', 'weekly']);
    const f = expectShape(Flow, (await get(`/api/v1/flows/${w.flow}`)).body);
    expect(f.target_ids).toEqual([w.t1.id, w.t2.id].sort());
    expect(f.schedule).toEqual({ cron: '0 2 * * *', timezone: 'Europe/Paris' });
    expect(f.retention).toEqual({ keep_last: 7, keep_daily: 14, keep_weekly: null, keep_monthly: null });
    expect(f.statistics).toMatchObject({ executions_total: 4, succeeded: 3, failed: 1, success_rate: 0.75, bytes_total: 12345 });
    const weekly = list.items.find((x) => x.id === w.otherFlow)!;
    expect(weekly.statistics.success_rate).toBeNull();
    expect(weekly.target_ids).toEqual([]);
  });

  it('a running execution: counts from the row and the jobs, byte-weighted percent capped below 100, jobs as documented', async () => {
    const e = expectShape(ExecutionDetail, (await get(`/api/v1/executions/${w.running}`)).body);
    expect(e).toMatchObject({ status: 'running', completed_at: null, flow_id: w.flow, flow_name: 'nightly', trigger: 'api' });
    expect(e.job_counts).toEqual({ total: 5, queued: 1, running: 2, succeeded: 1, failed: 1, cancelled: 0 });
    // 500 + 1000 + 4000 + 2000 (planned) + 3000
    expect(e.bytes_total).toBe(10_500);
    expect(e.bytes_done).toBe(500 + 500 + 2000 + 0 + 3000);
    // Ended jobs count whole: (500 + 1000 + 2000 + 0 + 3000) / 10500 = 61.9 %
    expect(e.percent).toBe(61);
    expect(e.jobs.map((j) => j.id)).toEqual(Object.values(w.jobs));

    const byId = new Map(e.jobs.map((j) => [j.id, j]));
    expect(byId.get(w.jobs.succeeded)).toMatchObject({ status: 'succeeded', percent: 100, target_id: w.t1.id, target_ref: 'vm-1' });
    expect(byId.get(w.jobs.failed)).toMatchObject({ status: 'failed', percent: 50, phase: null, stalled: false, stall_reason: null, error_code: 'AGENT_ERROR', target_id: w.t2.id });
    expect(byId.get(w.jobs.running)).toMatchObject({
      status: 'running',
      phase: 'transferring',
      percent: 50,
      bytes_total: 4000,
      bytes_done: 2000,
      bytes_transferred: 1500,
      bytes_reused: 300,
      bytes_read: 1800,
      bytes_zero: 200,
      rate_bytes_per_second: 100,
      eta_seconds: 20,
      busy: { source_read: 0.3, hash_compress: 0.1, network: 0.8, hub_write: 0.5 },
      bottleneck: 'network',
      stalled: false,
      completed_at: null,
    });
    expect(byId.get(w.jobs.queued)).toMatchObject({ status: 'queued', percent: 0, bytes_total: 2000, bytes_done: 0, phase: null, rate_bytes_per_second: null, eta_seconds: null, busy: null, bottleneck: null, target_id: null, target_ref: 'vm-3' });
    // A report with every stage at zero (a restore's) names no bottleneck.
    expect(byId.get(w.jobs.succeeded)).toMatchObject({ busy: null, bottleneck: null });
    expect(byId.get(w.jobs.stalled)).toMatchObject({ status: 'cancelling', percent: 99, phase: 'finalizing', stalled: true, stall_reason: 'no report for 60 s' });

    const job = expectShape(Job, (await get(`/api/v1/jobs/${w.jobs.running}`)).body);
    expect(job).toEqual(byId.get(w.jobs.running));
  });

  it('an ended execution shows 100', async () => {
    const e = expectShape(ExecutionDetail, (await get(`/api/v1/executions/${w.older}`)).body);
    expect(e).toMatchObject({ status: 'succeeded', percent: 100, bytes_total: 4000 });
    expect(e.completed_at).not.toBeNull();
  });

  it('executions: newest first, filters, paging with a total', async () => {
    const all = expectShape(ExecutionPage, (await get('/api/v1/executions')).body);
    expect(all.items.map((e) => e.id)).toEqual([w.running, w.failedExecution, w.older]);
    expect(all).toMatchObject({ total: 3, limit: 50, offset: 0 });
    expect(all.items[0]).not.toHaveProperty('jobs');

    const ofFlow = expectShape(ExecutionPage, (await get(`/api/v1/executions?flow_id=${w.flow}`)).body);
    expect(ofFlow.items.map((e) => e.id)).toEqual([w.running, w.older]);
    expect(ofFlow.items[0]!.percent).toBe(61);
    const failed = expectShape(ExecutionPage, (await get('/api/v1/executions?status=failed')).body);
    expect(failed.items.map((e) => e.id)).toEqual([w.failedExecution]);
    const page = expectShape(ExecutionPage, (await get(`/api/v1/executions?flow_id=${w.flow}&limit=1&offset=1`)).body);
    expect(page).toMatchObject({ total: 2, limit: 1, offset: 1 });
    expect(page.items.map((e) => e.id)).toEqual([w.older]);
  });

  it("a job's log, oldest line first, with a limit; 404 for an unknown job", async () => {
    const log = expectShape(JobLog, (await get(`/api/v1/jobs/${w.jobs.running}/log`)).body);
    expect(log.items.map((l) => [l.level, l.message])).toEqual([
      ['info', 'backup job queued'],
      ['info', 'dispatched'],
      ['warn', 'transferring'],
    ]);
    expect(log.items[2]!.fields).toEqual({ disk: 'vda' });
    const two = expectShape(JobLog, (await get(`/api/v1/jobs/${w.jobs.running}/log?limit=2`)).body);
    expect(two.items).toHaveLength(2);
    expect((await get(`/api/v1/jobs/${randomUUID()}/log`)).status).toBe(404);
  });

  it('backups: newest first, filtered by the target row id, with the target resolved where it exists', async () => {
    const all = expectShape(BackupPage, (await get('/api/v1/backups')).body);
    expect(all.items.map((b) => b.id)).toEqual([w.backups.orphan, w.backups.b2, w.backups.b1]);
    const ofT1 = expectShape(BackupPage, (await get(`/api/v1/backups?target_id=${w.t1.id}`)).body);
    expect(ofT1.items.map((b) => b.id)).toEqual([w.backups.b1]);
    expect(ofT1.total).toBe(1);
    const b = expectShape(Backup, (await get(`/api/v1/backups/${w.backups.b1}`)).body);
    expect(b).toMatchObject({ target_id: w.t1.id, target_ref: 'vm-1', target_name: 'web', bytes_total: 8388608 });
    expect(b.disks).toEqual([{ name: 'vda', size_bytes: 8388608, chunk_count: 2, zero_chunks: 1, full_read_reason: null }]);
    const orphan = expectShape(Backup, (await get(`/api/v1/backups/${w.backups.orphan}`)).body);
    expect(orphan).toMatchObject({ target_id: null, target_ref: 'no-such-target', target_name: null });
  });

  it('404 for ids that name nothing, on every resource', async () => {
    for (const res of ['agents', 'targets', 'flows', 'executions', 'jobs', 'backups']) {
      const r = await get(`/api/v1/${res}/${randomUUID()}`);
      expect(r.status, res).toBe(404);
      expect(r.body.code).toBe('NOT_FOUND');
    }
  });
});
