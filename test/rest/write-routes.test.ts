import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExecutionDetail, Flow, Job, Target } from '../../hub/rest/schemas.js';
import { query } from '../support/database.js';
import { eventually } from '../support/processes.js';
import { api, insertAgent, insertBackup, insertJob, startRestHub, type RestHub } from './rest-support.js';

let h: RestHub;
let agentId: string;
const op = (method: string, path: string, body?: unknown) => api(h, h.tokens.operator, method, path, body);

beforeAll(async () => {
  h = await startRestHub();
  // Enrolled but not connected: jobs for it wait in the queue, which is what these tests need.
  agentId = await insertAgent(h.db.url, { name: 'hv1' });
});

afterAll(async () => {
  await h?.close();
});

async function addTarget(ref: string, sizes: number[] = [1 << 20]) {
  const r = await op('POST', '/api/v1/targets', {
    agent_id: agentId,
    ref,
    name: ref,
    driver: 'qemu',
    disks: sizes.map((s, i) => ({ name: `vd${'abc'[i]}`, path: `/vm/${ref}/${i}.qcow2`, size_bytes: s })),
    options: { qmp: `/run/${ref}.qmp` },
  });
  expect(r.status).toBe(201);
  return Target.parse(r.body);
}

describe('REST write routes, through the lifecycle', () => {
  it('POST /targets adds a target (201), refuses a duplicate (409) and an unknown agent (400 agent_id)', async () => {
    const t = await addTarget('vm-added', [1000, 2000]);
    expect(t).toMatchObject({ agent_id: agentId, ref: 'vm-added', source: 'api', options: { qmp: '/run/vm-added.qmp' } });
    expect(t.disks.map((d) => d.size_bytes)).toEqual([1000, 2000]);
    expect(Target.parse((await op('GET', `/api/v1/targets/${t.id}`)).body)).toEqual(t);

    const dup = await op('POST', '/api/v1/targets', { agent_id: agentId, ref: 'vm-added', name: 'again', driver: 'qemu', disks: [{ name: 'vda', path: '/x', size_bytes: 1 }] });
    expect(dup.status).toBe(409);
    expect(dup.body.code).toBe('ALREADY_EXISTS');
    const stranger = await op('POST', '/api/v1/targets', { agent_id: randomUUID(), ref: 'vm', name: 'vm', driver: 'qemu', disks: [{ name: 'vda', path: '/x', size_bytes: 1 }] });
    expect(stranger.status).toBe(400);
    expect(stranger.body).toMatchObject({ code: 'INVALID_ARGUMENT', details: { field: 'agent_id' } });
  });

  it('flows: create (201), patch only what is named, disable refuses run (422), enable', async () => {
    const t = await addTarget('vm-flow');
    const created = await op('POST', '/api/v1/flows', {
      name: 'daily',
      description: 'the web tier',
      target_ids: [t.id],
      schedule: { cron: '30 1 * * *', timezone: 'Europe/Berlin' },
      retention: { keep_last: 3, keep_weekly: 4 },
    });
    expect(created.status).toBe(201);
    const flow = Flow.parse(created.body);
    expect(flow).toMatchObject({ name: 'daily', description: 'the web tier', target_ids: [t.id], enabled: true, schedule: { cron: '30 1 * * *', timezone: 'Europe/Berlin' } });
    expect(flow.retention).toEqual({ keep_last: 3, keep_daily: null, keep_weekly: 4, keep_monthly: null });
    expect(flow.statistics).toMatchObject({ executions_total: 0, success_rate: null, last_execution_id: null });

    const patched = Flow.parse((await op('PATCH', `/api/v1/flows/${flow.id}`, { name: 'daily-web', schedule: null })).body);
    expect(patched).toMatchObject({ name: 'daily-web', schedule: null, description: 'the web tier', target_ids: [t.id] });
    expect(patched.retention).toEqual(flow.retention);
    const unknownTarget = await op('PATCH', `/api/v1/flows/${flow.id}`, { target_ids: [randomUUID()] });
    expect(unknownTarget.status).toBe(400);
    expect(unknownTarget.body.details.field).toBe('target_ids');

    expect(Flow.parse((await op('POST', `/api/v1/flows/${flow.id}/disable`)).body).enabled).toBe(false);
    const refused = await op('POST', `/api/v1/flows/${flow.id}/run`);
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe('FLOW_DISABLED');
    expect(Flow.parse((await op('POST', `/api/v1/flows/${flow.id}/enable`)).body).enabled).toBe(true);
  });

  it('run now answers 202 with a running execution and the jobs it created; cancel ends it; the flow counts it', async () => {
    const a = await addTarget('vm-run-a', [3000, 1000]);
    const b = await addTarget('vm-run-b', [6000]);
    const flow = Flow.parse((await op('POST', '/api/v1/flows', { name: 'run-now', target_ids: [a.id, b.id] })).body);

    const run = await op('POST', `/api/v1/flows/${flow.id}/run`);
    expect(run.status).toBe(202);
    const e = ExecutionDetail.parse(run.body);
    // Started is not completed: running, no completed_at, counters of what exists.
    expect(e).toMatchObject({ flow_id: flow.id, flow_name: 'run-now', trigger: 'api', status: 'running', completed_at: null });
    expect(e.job_counts.total).toBe(2);
    expect(e.jobs).toHaveLength(2);
    expect(e.jobs.map((j) => j.target_id).sort()).toEqual([a.id, b.id].sort());
    expect(e.bytes_total).toBe(10_000);
    expect(e.percent).toBe(0);
    for (const j of e.jobs) expect(j).toMatchObject({ kind: 'backup', execution_id: e.id, status: 'queued', percent: 0, completed_at: null });

    const again = await op('POST', `/api/v1/flows/${flow.id}/run`);
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'FLOW_ALREADY_RUNNING', details: { execution_id: e.id } });
    const busyDelete = await op('DELETE', `/api/v1/flows/${flow.id}`);
    expect(busyDelete.status).toBe(409);
    expect(busyDelete.body.code).toBe('IN_USE');

    const cancel = await op('POST', `/api/v1/executions/${e.id}/cancel`);
    expect(cancel.status).toBe(202);
    ExecutionDetail.parse(cancel.body);
    const ended = await eventually(async () => {
      const now = ExecutionDetail.parse((await op('GET', `/api/v1/executions/${e.id}`)).body);
      return now.status === 'running' ? null : now;
    }, 15_000, 'execution to end');
    expect(ended).toMatchObject({ status: 'cancelled', percent: 100 });
    expect(ended.completed_at).not.toBeNull();
    expect(ended.job_counts).toMatchObject({ total: 2, cancelled: 2, queued: 0, running: 0 });
    for (const j of ended.jobs) expect(j).toMatchObject({ status: 'cancelled', error_code: 'CANCELLED' });

    const stats = Flow.parse((await op('GET', `/api/v1/flows/${flow.id}`)).body).statistics;
    expect(stats).toMatchObject({ last_execution_id: e.id, last_execution_status: 'cancelled', executions_total: 1, cancelled: 1, success_rate: 0 });

    expect((await op('DELETE', `/api/v1/flows/${flow.id}`)).status).toBe(204);
    expect((await op('GET', `/api/v1/flows/${flow.id}`)).status).toBe(404);
    // Its executions stay, naming it by name.
    expect(ExecutionDetail.parse((await op('GET', `/api/v1/executions/${e.id}`)).body)).toMatchObject({ flow_id: null, flow_name: 'run-now' });
  });

  it('POST /jobs/:id/cancel answers 202 with the job, cancelled at once when it was only queued', async () => {
    const t = await addTarget('vm-cancel-job');
    const flow = Flow.parse((await op('POST', '/api/v1/flows', { name: 'cancel-one', target_ids: [t.id] })).body);
    const e = ExecutionDetail.parse((await op('POST', `/api/v1/flows/${flow.id}/run`)).body);
    const r = await op('POST', `/api/v1/jobs/${e.jobs[0]!.id}/cancel`);
    expect(r.status).toBe(202);
    expect(Job.parse(r.body)).toMatchObject({ id: e.jobs[0]!.id, status: 'cancelled', error_code: 'CANCELLED' });
    expect((await op('POST', `/api/v1/jobs/${randomUUID()}/cancel`)).status).toBe(404);
  });

  it('backups: verify and restore answer 202 with their job; delete is refused while a restore reads it, then done (204)', async () => {
    const jobId = await insertJob(h.db.url, { agentId, targetRef: 'vm-added', status: 'succeeded', progress: { bytesTotal: 8388608, bytesDone: 8388608 } });
    const backupId = await insertBackup(h.db.url, { jobId, agentId, targetRef: 'vm-added' });

    const verify = await op('POST', `/api/v1/backups/${backupId}/verify`);
    expect(verify.status).toBe(202);
    const v = Job.parse(verify.body);
    expect(v).toMatchObject({ kind: 'verify', agent_id: null, execution_id: null });

    const badDisk = await op('POST', `/api/v1/backups/${backupId}/restore`, { disks: [{ disk_name: 'sdz', path: '/restore/sdz.raw' }] });
    expect(badDisk.status).toBe(400);
    expect(badDisk.body.code).toBe('INVALID_ARGUMENT');

    const restore = await op('POST', `/api/v1/backups/${backupId}/restore`, { disks: [{ disk_name: 'vda', path: '/restore/vda.qcow2', format: 'qcow2', create: true }] });
    expect(restore.status).toBe(202);
    const r = Job.parse(restore.body);
    expect(r).toMatchObject({ kind: 'restore', agent_id: agentId, status: 'queued', completed_at: null });

    // The verify of a backup whose indexes are not in the repository ends failed, with a reason.
    const verified = await eventually(async () => {
      const j = Job.parse((await op('GET', `/api/v1/jobs/${v.id}`)).body);
      return j.completed_at ? j : null;
    }, 15_000, 'verify to end');
    expect(verified.status).toBe('failed');
    expect(verified.error_code).not.toBeNull();

    expect((await api(h, h.tokens.admin, 'DELETE', `/api/v1/backups/${backupId}`)).body.code).toBe('IN_USE');
    expect((await op('POST', `/api/v1/jobs/${r.id}/cancel`)).status).toBe(202);
    const deleted = await api(h, h.tokens.admin, 'DELETE', `/api/v1/backups/${backupId}`);
    expect(deleted.status).toBe(204);
    expect(deleted.body).toBeNull();
    expect((await op('GET', `/api/v1/backups/${backupId}`)).status).toBe(404);
    expect((await query(h.db.url, 'select 1 from backups where id = $1', [backupId])).length).toBe(0);
  });
});
