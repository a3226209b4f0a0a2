/**
 * Cancel and agent loss in every phase, on the real system: a hub process, agent processes
 * with the qemu driver, and a real qemu-storage-daemon per test. Phases are held open with real
 * faults, not hooks: a SIGSTOPped daemon keeps a job in `snapshotting` (its QMP transaction
 * waits), the agent's read limit keeps it `transferring`, and a SIGSTOPped agent never sends
 * its first report. After each test nothing of the job may be left on the hypervisor (asked
 * through QMP) and the truth rules hold over the whole database.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../support/database.js';
import { StorageDaemon } from '../support/qemu.js';
import { FAST_LIFECYCLE, MiB, Stack, type StackAgent } from './stack.js';

const AGENT_LOST_GRACE_MS = Number(FAST_LIFECYCLE.BACKHAUL_HUB_AGENT_LOST_GRACE_MS);
/** A sweep runs every 200 ms; a loaded CI machine gets two more seconds on top. */
const LOST_SLACK_MS = 2_000;

let stack: Stack;
const daemons: StorageDaemon[] = [];

beforeAll(async () => {
  stack = await Stack.start();
});

afterEach(async () => {
  await stack.checkTruth();
});

afterAll(async () => {
  for (const d of daemons) {
    if (d.proc.exitCode === null) d.proc.kill('SIGCONT');
    await d.destroy();
  }
  await stack?.stop();
});

interface Vm {
  qsd: StorageDaemon;
  agent: StackAgent;
  targetIds: string[];
}

/**
 * A VM of `disks` 64 MiB qcow2 disks with 48 MiB of data each, as separate targets, on a new
 * agent that reads at most 12 MiB/s (about four seconds per disk).
 */
async function vm(name: string, disks = 1, agentEnv: Record<string, string> = {}): Promise<Vm> {
  const nodes = Array.from({ length: disks }, (_, i) => `disk${i}`);
  const qsd = await StorageDaemon.start({ disks: nodes.map((node) => ({ node, sizeBytes: 64 * MiB })) });
  daemons.push(qsd);
  for (const node of nodes) await qsd.write(node, 0, randomBytes(48 * MiB));
  const targets = nodes.map((node) => ({
    id: `${name}-${node}`,
    name: `${name}-${node}`,
    driver: 'qemu',
    disks: [{ name: 'sda', path: node }],
    options: { qmpSocket: qsd.driverQmpSocket, nbdSocket: qsd.nbdSocket },
  }));
  const agent = await stack.addAgent(targets, { BACKHAUL_AGENT_READ_LIMIT_BPS: String(12 * MiB), ...agentEnv }, name);
  const refs = await stack.targetsOf(agent.id);
  return { qsd, agent, targetIds: targets.map((t) => refs.get(t.id)!) };
}

/**
 * Nothing of any job is left on the hypervisor: exports, fleecing nodes, block jobs, bitmaps
 * (but `bitmaps` current ones), files. The agent releases a snapshot once the hub has answered
 * its final report, a moment after the job ended, so this waits up to 15 s for it.
 */
async function nothingLeft(qsd: StorageDaemon, bitmaps = 0): Promise<void> {
  const state = async () => {
    const left = await qsd.objectsOf();
    return { ...left, exports: left.exports.filter((e) => !e.startsWith('live-')), bitmaps: left.bitmaps.length };
  };
  const clean = { exports: [], nodes: [], jobs: [], bitmaps, files: [] };
  const end = Date.now() + 15_000;
  while (Date.now() < end && JSON.stringify(await state()) !== JSON.stringify(clean)) await new Promise((r) => setTimeout(r, 200));
  expect(await state()).toEqual(clean);
}

async function runOne(v: Vm, name: string, targets = v.targetIds): Promise<string> {
  const flow = await stack.createFlow(name, targets);
  return (await stack.runFlow(flow, targets.length)).id;
}

describe('cancel', () => {
  it('while snapshotting: the job goes to cancelling, ends cancelled, and the snapshot is undone', async () => {
    const v = await vm('cancel-snap');
    v.qsd.proc.kill('SIGSTOP'); // the QMP transaction waits on a frozen hypervisor
    const exec = await runOne(v, 'cancel-snap');
    const job = await stack.jobWhere(exec, (j) => j.phase === 'snapshotting', 20_000, 'snapshotting');
    const r = await stack.api('POST', `/api/v1/executions/${exec}/cancel`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect((await stack.job(job.id)).status).toBe('cancelling');
    v.qsd.proc.kill('SIGCONT');
    const done = await stack.finish(exec, 30_000);
    expect(done.status).toBe('cancelled');
    expect(done.jobs[0]).toMatchObject({ status: 'cancelled', error_code: 'CANCELLED' });
    expect(done.jobs[0]!.backup_id).toBeNull();
    await nothingLeft(v.qsd);
  });

  it('while transferring: the agent aborts and cleans up, and the job ends cancelled with no backup', async () => {
    const v = await vm('cancel-xfer');
    const exec = await runOne(v, 'cancel-xfer');
    const job = await stack.jobWhere(exec, (j) => j.phase === 'transferring' && j.bytes_done > 0, 20_000, 'transferring');
    expect((await v.qsd.objectsOf()).exports.filter((e) => !e.startsWith('live-')).length).toBeGreaterThan(0);
    const r = await stack.api('POST', `/api/v1/jobs/${job.id}/cancel`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    const done = await stack.finish(exec, 30_000);
    expect(done.status).toBe('cancelled');
    expect(done.jobs[0]).toMatchObject({ status: 'cancelled', error_code: 'CANCELLED', backup_id: null });
    expect(done.jobs[0]!.percent).toBeLessThan(100);
    await nothingLeft(v.qsd);
    expect((await stack.api('GET', `/api/v1/backups?agent_id=${v.agent.id}`)).body.items).toEqual([]);
  });

  it('while queued: the job is cancelled at once; its sibling runs on and the execution ends partial', async () => {
    const v = await vm('cancel-queued', 2, { BACKHAUL_AGENT_MAX_JOBS: '1' });
    const exec = await runOne(v, 'cancel-queued');
    // Both start queued; once one transfers on the agent's only slot, the other must wait.
    await stack.jobWhere(exec, (j) => j.phase === 'transferring', 20_000, 'one job transferring');
    const queued = await stack.jobWhere(exec, (j) => j.status === 'queued', 1_000, 'the other job queued');
    const r = await stack.api('POST', `/api/v1/jobs/${queued.id}/cancel`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body).toMatchObject({ id: queued.id, status: 'cancelled', error_code: 'CANCELLED' });
    expect((await stack.execution(exec)).status).toBe('running');
    const done = await stack.finish(exec, 60_000);
    expect(done.status).toBe('partial');
    expect(done.job_counts).toMatchObject({ total: 2, succeeded: 1, cancelled: 1, failed: 0 });
    // The cancelled job never reached the agent; the other left only its next bitmap.
    expect(done.jobs.find((j) => j.id === queued.id)!.started_at).toBeNull();
    await nothingLeft(v.qsd, 1);
  });
});

describe('cancel with the agent gone', () => {
  it('a cancelled job of an offline agent ends cancelled after the grace; the agent cleans up when it returns', async () => {
    const v = await vm('cancel-offline');
    const exec = await runOne(v, 'cancel-offline');
    const job = await stack.jobWhere(exec, (j) => j.phase === 'transferring' && j.bytes_done > 0, 20_000, 'transferring');
    await v.agent.proc.kill('SIGKILL');
    const r = await stack.api('POST', `/api/v1/jobs/${job.id}/cancel`);
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect(r.body.status).toBe('cancelling');
    const cancelledAt = Date.now();
    const done = await stack.finish(exec, AGENT_LOST_GRACE_MS + 15_000);
    expect(Date.now() - cancelledAt).toBeLessThan(AGENT_LOST_GRACE_MS + LOST_SLACK_MS + 1_000);
    expect(done.status).toBe('cancelled');
    expect(done.jobs[0]).toMatchObject({ status: 'cancelled', error_code: 'CANCELLED', backup_id: null });
    // Its fleecing is still on the hypervisor until the agent is back.
    expect((await v.qsd.objectsOf()).nodes.length).toBeGreaterThan(0);
    await v.agent.restart();
    await nothingLeft(v.qsd);
  });
});

describe('agent killed', () => {
  /** SIGKILLs the agent and checks the job fails AGENT_LOST within the grace, then that the execution ended. */
  async function killAndExpectLost(v: Vm, exec: string, jobId: string, kill = true): Promise<void> {
    if (kill) await v.agent.proc.kill('SIGKILL');
    const killedAt = Date.now();
    const done = await stack.finish(exec, AGENT_LOST_GRACE_MS + 15_000);
    const lostAfter = Date.now() - killedAt;
    expect(done.status).toBe('failed');
    const job = done.jobs.find((j) => j.id === jobId)!;
    expect(job).toMatchObject({ status: 'failed', error_code: 'AGENT_LOST' });
    expect(job.error_message).toMatch(/offline/);
    expect(lostAfter).toBeGreaterThanOrEqual(AGENT_LOST_GRACE_MS - 500);
    expect(lostAfter).toBeLessThan(AGENT_LOST_GRACE_MS + LOST_SLACK_MS + 1_000);
  }

  it('before its first report: the job shows stalled, then fails AGENT_LOST within the grace', async () => {
    const v = await vm('lost-first');
    v.agent.proc.child.kill('SIGSTOP'); // it receives the start command but can never answer
    const exec = await runOne(v, 'lost-first');
    const job = await stack.jobWhere(exec, (j) => j.status === 'dispatched', 10_000, 'dispatched');
    expect(job.phase).toBeNull();
    expect(job.started_at).toBeNull();
    // Frozen, it misses its heartbeats: the hub cuts it and shows the job stalled.
    const stalled = await stack.jobWhere(exec, (j) => j.stalled, 15_000, 'stalled');
    expect(stalled.stall_reason).toMatch(/disconnected/);
    await killAndExpectLost(v, exec, job.id);
    await v.agent.restart();
    await nothingLeft(v.qsd);
  });

  it('while snapshotting: AGENT_LOST within the grace; the restarted agent removes what the job left', async () => {
    const v = await vm('lost-snap');
    v.qsd.proc.kill('SIGSTOP');
    const exec = await runOne(v, 'lost-snap');
    const job = await stack.jobWhere(exec, (j) => j.phase === 'snapshotting', 20_000, 'snapshotting');
    await killAndExpectLost(v, exec, job.id);
    v.qsd.proc.kill('SIGCONT');
    await v.agent.restart();
    await nothingLeft(v.qsd);
  });

  it('while finalizing: AGENT_LOST within the grace, nothing is committed, and the restarted agent cleans up', async () => {
    const v = await vm('lost-final');
    // A stalled database holds the job in finalizing: the test's open transaction has staged a
    // row under the disk's index key, so the hub's insert of the index waits on it, and the
    // agent waits for the hub's answer.
    const db = new pg.Client({ connectionString: stack.db.url });
    await db.connect();
    try {
      const exec = await runOne(v, 'lost-final');
      const running = await stack.jobWhere(exec, (j) => j.status === 'running', 20_000, 'running');
      await db.query('begin');
      await db.query(`insert into job_disk_indexes (job_id, disk_name, disk_size, digests, received_at) values ($1, 'sda', 0, '', now())`, [running.id]);
      const job = await stack.jobWhere(exec, (j) => j.phase === 'finalizing', 30_000, 'finalizing');
      await v.agent.proc.kill('SIGKILL');
      await db.query('rollback');
      await killAndExpectLost(v, exec, job.id, false);
      expect(await query(stack.db.url, 'select 1 from job_disk_indexes where job_id = $1', [job.id])).toEqual([]);
      expect(await query(stack.db.url, 'select 1 from backups where job_id = $1', [job.id])).toEqual([]);
    } finally {
      await db.end();
    }
    await v.agent.restart();
    await nothingLeft(v.qsd);
  });

  it('while transferring: AGENT_LOST within the grace; the restarted agent removes the export, fleecing and bitmap', async () => {
    const v = await vm('lost-xfer');
    const exec = await runOne(v, 'lost-xfer');
    const job = await stack.jobWhere(exec, (j) => j.phase === 'transferring' && j.bytes_done > 0, 20_000, 'transferring');
    await killAndExpectLost(v, exec, job.id);
    const during = await v.qsd.objectsOf();
    expect(during.exports.filter((e) => !e.startsWith('live-')).length).toBeGreaterThan(0);
    await v.agent.restart();
    await nothingLeft(v.qsd);
    // The next run of the target is whole again.
    const again = await stack.finish(await runOne(v, 'lost-xfer-again'), 60_000);
    expect(again.status).toBe('succeeded');
  });
});
