/**
 * Backups and restores end to end: a real hub (in process, for its job service), a real agent
 * process enrolled over mTLS, real PostgreSQL, the real repository on disk, and for the qemu
 * driver a real qemu-storage-daemon. What is asserted is what a user would see: job statuses,
 * bytes read and sent, and the SHA-256 of restored images.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createJoinToken } from '../../hub/agents/join-tokens.js';
import type { Hub } from '../../hub/hub.js';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';
import { eventually, runAgentCli, startAgent, tempDir, type Proc } from '../support/processes.js';
import { MiB, StorageDaemon } from '../support/qemu.js';
import { randomWrites } from '../drivers/qemu/harness.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const CHUNK = 4 * MiB;

let db: TestDatabase;
let hub: Hub;
const procs: Proc[] = [];
const agentStateDirs = new Map<string, string>();
const daemons: StorageDaemon[] = [];

interface JobRow {
  id: string;
  status: string;
  error_code: string | null;
  error_message: string | null;
  backup_id: string | null;
  progress: {
    bytesRead: number;
    bytesTransferred: number;
    bytesTotal: number;
    bytesDone: number;
    busy: { sourceRead: number; hashCompress: number; network: number; hubWrite: number };
  } | null;
  result: { disks: { name: string; sha256: string }[] } | null;
}

async function setup(targets: unknown[]): Promise<string> {
  db ??= await createTestDatabase();
  hub ??= await startInProcessHub(db.url);
  const stateDir = await tempDir('bh-agent');
  const t = await createJoinToken(hub.orm.em.fork(), 60_000);
  const r = await runAgentCli(['enroll', '--hub', `127.0.0.1:${hub.port}`, '--token', t.token, '--ca-sha256', hub.ca.fingerprint], { BACKHAUL_AGENT_STATE_DIR: stateDir });
  expect(r.code, r.stderr).toBe(0);
  const agentId = /agent ([0-9a-f-]{36})/.exec(r.stdout)![1]!;
  agentStateDirs.set(agentId, stateDir);
  const agent = startAgent(stateDir, { BACKHAUL_AGENT_TARGETS: JSON.stringify(targets) });
  procs.push(agent);
  await eventually(() => Promise.resolve(hub.registry.connected(agentId)), 20_000, 'agent connected');
  return agentId;
}

async function finished(jobId: string, timeoutMs = 60_000): Promise<JobRow> {
  return eventually(
    async () => {
      const [row] = await query<JobRow>(db.url, 'select id, status, error_code, error_message, backup_id, progress, result from jobs where id = $1', [jobId]);
      return row && ['succeeded', 'failed', 'cancelled'].includes(row.status) ? row : null;
    },
    timeoutMs,
    `job ${jobId} to end`,
  );
}

async function backup(agentId: string, targetId: string): Promise<JobRow> {
  const job = await hub.jobs.startBackup(agentId, targetId);
  const row = await finished(job.id);
  expect(row.status, `${row.error_code}: ${row.error_message}`).toBe('succeeded');
  return row;
}

async function restore(backupId: string, agentId: string, disks: { diskName: string; path: string; format?: 'raw' | 'qcow2' }[]): Promise<JobRow> {
  const job = await hub.jobs.startRestore(
    backupId,
    agentId,
    disks.map((d) => ({ diskName: d.diskName, path: d.path, format: d.format ?? 'raw', create: true })),
  );
  const row = await finished(job.id);
  expect(row.status, `${row.error_code}: ${row.error_message}`).toBe('succeeded');
  return row;
}

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.destroy();
});

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await hub?.stop();
  await db?.drop();
});

describe('file driver, through a real agent process', () => {
  it('full backup, incremental after a change, and restores of both are bit-exact', async () => {
    const dir = await tempDir('bh-img');
    const image = join(dir, 'vm.raw');
    const v1 = Buffer.concat([randomBytes(2 * CHUNK), Buffer.alloc(2 * CHUNK), randomBytes(CHUNK + 12345)]);
    await writeFile(image, v1);
    const agentId = await setup([{ id: 'vm-file', name: 'file vm', driver: 'file', disks: [{ name: 'sda', path: image }] }]);

    const full = await backup(agentId, 'vm-file');
    expect(full.progress).toMatchObject({ bytesTotal: v1.length, bytesDone: v1.length, bytesTransferred: 3 * CHUNK + 12345 });
    // Every stage has a share, the hub's stores included (their time comes back with each answer).
    for (const stage of ['sourceRead', 'hashCompress', 'network', 'hubWrite'] as const) {
      expect(full.progress!.busy[stage], stage).toBeGreaterThan(0);
      expect(full.progress!.busy[stage], stage).toBeLessThanOrEqual(1);
    }

    const v2 = Buffer.from(v1);
    randomBytes(1000).copy(v2, CHUNK + 5);
    await writeFile(image, v2);
    const incr = await backup(agentId, 'vm-file');
    // The file driver reads everything but sends only the chunk the hub lacks.
    expect(incr.progress!.bytesTransferred).toBe(CHUNK);

    const out = await tempDir('bh-restore');
    const r2 = await restore(incr.backup_id!, agentId, [{ diskName: 'sda', path: join(out, 'v2.raw') }]);
    expect(r2.result!.disks[0]!.sha256).toBe(sha(v2));
    expect(sha(await readFile(join(out, 'v2.raw')))).toBe(sha(v2));
    const r1 = await restore(full.backup_id!, agentId, [{ diskName: 'sda', path: join(out, 'v1.raw') }]);
    expect(sha(await readFile(join(out, 'v1.raw')))).toBe(sha(v1));
    expect(r1.result!.disks[0]!.sha256).toBe(sha(v1));
  });
});

describe('a restore checks every chunk at the destination', () => {
  it('fails with DATA_LOSS, naming the chunk, when a chunk changed on disk, and leaves no destination behind', async () => {
    const dir = await tempDir('bh-img');
    const image = join(dir, 'vm.raw');
    const v1 = randomBytes(2 * CHUNK);
    await writeFile(image, v1);
    const agentId = await setup([{ id: 'vm-rot', name: 'rot vm', driver: 'file', disks: [{ name: 'sda', path: image }] }]);
    const full = await backup(agentId, 'vm-rot');

    // Random data is stored in zstd raw blocks: a byte flipped in the middle still decodes, so only
    // the SHA-256 can tell (the hub's restore reads leave it to the agent).
    const digest = sha(v1.subarray(CHUNK));
    const chunkFile = join(hub.repo.root, 'chunks', digest.slice(0, 2), digest);
    const bytes = await readFile(chunkFile);
    bytes[bytes.length >> 1] ^= 0x01;
    await writeFile(chunkFile, bytes);

    const dest = join(await tempDir('bh-restore'), 'rot.raw');
    const job = await hub.jobs.startRestore(full.backup_id!, agentId, [{ diskName: 'sda', path: dest, format: 'raw', create: true }]);
    const row = await finished(job.id);
    expect(row.status).toBe('failed');
    expect(row.error_code, row.error_message ?? '').toBe('DATA_LOSS');
    expect(row.error_message).toContain(`chunk 1 (${digest}) does not match its digest`);
    await expect(readFile(dest)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('verify, prune and garbage collection as hub jobs', () => {
  it('verify names a chunk corrupted on disk; prune keeps exactly what the policy says; GC frees what no backup names; restores still verify', async () => {
    const dir = await tempDir('bh-img');
    const image = join(dir, 'vm.raw');
    const agentId = await setup([{ id: 'vm-maint', name: 'maint vm', driver: 'file', disks: [{ name: 'sda', path: image }] }]);
    const versions: Buffer[] = [];
    const backups: JobRow[] = [];
    for (let i = 0; i < 3; i++) {
      versions.push(randomBytes(CHUNK + 1000));
      await writeFile(image, versions[i]!);
      backups.push(await backup(agentId, 'vm-maint'));
    }
    const first = await hub.maintenance.startVerify(backups[0]!.backup_id!);
    expect(first.job.status).toBe('running');
    const ok = await first.done;
    expect(ok.status).toBe('succeeded');
    expect(ok.result).toMatchObject({ chunksChecked: 2, corrupt: [], missing: [] });

    // Corrupt one chunk of the oldest backup on disk: verify must name it.
    const digest = createHash('sha256').update(versions[0]!.subarray(0, CHUNK)).digest('hex');
    const chunkFile = join(hub.repo.root, 'chunks', digest.slice(0, 2), digest);
    const bytes = await readFile(chunkFile);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(chunkFile, bytes);
    const bad = await (await hub.maintenance.startVerify(backups[0]!.backup_id!)).done;
    expect(bad.status).toBe('failed');
    expect(bad.errorCode).toBe('DATA_LOSS');
    expect(bad.result).toMatchObject({ corrupt: [digest] });

    // keep-last 1: the two older backups go, the newest stays.
    const pruned = await (await hub.maintenance.startPrune(agentId, 'vm-maint', { keepLast: 1 })).done;
    expect(pruned.status).toBe('succeeded');
    const decided = pruned.result as { removed: string[]; kept: string[] };
    expect([...decided.removed].sort()).toEqual([backups[0]!.backup_id, backups[1]!.backup_id].sort());
    expect(decided.kept).toEqual([backups[2]!.backup_id]);
    const left = await query<{ id: string }>(db.url, "select id from backups where target_id = 'vm-maint'");
    expect(left.map((r) => r.id)).toEqual([backups[2]!.backup_id]);

    // GC with no grace frees exactly the chunks only the pruned backups named (2 each), not the kept ones.
    const gc = await (await hub.maintenance.startGc(0)).done;
    expect(gc.status).toBe('succeeded');
    expect(gc.result).toMatchObject({ removedChunks: 4 });
    const verifyKept = await (await hub.maintenance.startVerify(backups[2]!.backup_id!)).done;
    expect(verifyKept.status).toBe('succeeded');
    const out = await tempDir('bh-restore');
    const r = await restore(backups[2]!.backup_id!, agentId, [{ diskName: 'sda', path: join(out, 'kept.raw') }]);
    expect(r.result!.disks[0]!.sha256).toBe(sha(versions[2]!));
  });

  it('a cancelled backup ends cancelled and commits nothing', async () => {
    const dir = await tempDir('bh-img');
    const image = join(dir, 'big.raw');
    await writeFile(image, randomBytes(384 * MiB));
    const agentId = await setup([{ id: 'vm-big', name: 'big vm', driver: 'file', disks: [{ name: 'sda', path: image }] }]);
    const job = await hub.jobs.startBackup(agentId, 'vm-big');
    // Cancel it mid-run (a queued job would simply be cancelled before it started).
    await eventually(async () => (await query<{ status: string }>(db.url, 'select status from jobs where id = $1', [job.id]))[0]?.status === 'running', 20_000, 'the job to run');
    const now = await hub.jobs.cancel(job.id);
    expect(now!.status).toBe('cancelling');
    const row = await finished(job.id);
    expect(row.status).toBe('cancelled');
    expect(row.error_code).toBe('CANCELLED');
    expect(row.backup_id).toBeNull();
    expect(await query(db.url, 'select 1 from backups where job_id = $1', [job.id])).toEqual([]);
    expect(await query(db.url, 'select 1 from job_disk_indexes where job_id = $1', [job.id])).toEqual([]);
  });
});

describe('qemu driver, through a real agent process and a real qemu-storage-daemon', () => {
  it('full backup restores bit-exactly; an incremental reads only the changed chunks and restores bit-exactly', async () => {
    const size = 64 * MiB;
    const qsd = await StorageDaemon.start({
      disks: [{ node: 'disk0', sizeBytes: size, prefill: [{ offset: 0, length: 20 * MiB, pattern: 0x5a }, { offset: 40 * MiB, length: 8 * MiB, pattern: 0x17 }] }],
    });
    daemons.push(qsd);
    await qsd.write('disk0', 3 * MiB, randomBytes(5 * MiB));
    const agentId = await setup([
      { id: 'vm-qemu', name: 'qemu vm', driver: 'qemu', disks: [{ name: 'sda', path: 'disk0' }], options: { qmpSocket: qsd.driverQmpSocket, nbdSocket: qsd.nbdSocket } },
    ]);
    const before = await qsd.content('disk0');
    const full = await backup(agentId, 'vm-qemu');
    const [b1] = await query<{ disks: { bitmap: string }[] }>(db.url, 'select disks from backups where id = $1', [full.backup_id]);
    expect(b1!.disks[0]!.bitmap).toMatch(/^bh-/);

    const writes = await randomWrites(qsd, 'disk0', size, 6, 42);
    const after = await qsd.content('disk0');
    const touched = new Set<number>();
    for (const w of writes) for (let c = Math.floor(w.offset / CHUNK); c <= Math.floor((w.offset + w.length - 1) / CHUNK); c++) touched.add(c);
    const incr = await backup(agentId, 'vm-qemu');
    expect(incr.progress!.bytesRead).toBeGreaterThan(0);
    expect(incr.progress!.bytesRead).toBeLessThanOrEqual(touched.size * CHUNK);

    const out = await tempDir('bh-restore');
    const r1 = await restore(full.backup_id!, agentId, [{ diskName: 'sda', path: join(out, 'full.raw') }]);
    expect(r1.result!.disks[0]!.sha256).toBe(sha(before));
    const r2 = await restore(incr.backup_id!, agentId, [{ diskName: 'sda', path: join(out, 'incr.qcow2'), format: 'qcow2' }]);
    expect(r2.result!.disks[0]!.sha256).toBe(sha(after));
    // Nothing of either job is left on the hypervisor but the current bitmap.
    const left = await qsd.objectsOf();
    expect(left.exports.filter((e) => !e.startsWith('live-'))).toEqual([]);
    expect(left.jobs).toEqual([]);
    expect(left.bitmaps).toHaveLength(1);
  });

  it('an agent killed mid-transfer leaves nothing on the hypervisor once it restarts, and the next backup is whole', async () => {
    const size = 320 * MiB;
    const qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: size }] });
    daemons.push(qsd);
    for (let o = 0; o < 256 * MiB; o += 32 * MiB) await qsd.write('disk0', o, randomBytes(32 * MiB));
    const target = { id: 'vm-kill', name: 'kill vm', driver: 'qemu', disks: [{ name: 'sda', path: 'disk0' }], options: { qmpSocket: qsd.driverQmpSocket, nbdSocket: qsd.nbdSocket } };
    const agentId = await setup([target]);
    const agent = procs.at(-1)!;
    const job = await hub.jobs.startBackup(agentId, 'vm-kill');
    await eventually(async () => {
      const [r] = await query<{ phase: string | null }>(db.url, 'select phase from jobs where id = $1', [job.id]);
      return r?.phase === 'transferring';
    }, 30_000, 'the transfer to start');
    await agent.kill('SIGKILL');
    const during = await qsd.objectsOf();
    expect(during.exports.filter((e) => !e.startsWith('live-')).length).toBeGreaterThan(0);

    // The restarted agent removes the job's export, fleecing node, block job and bitmap.
    const restarted = startAgent(agentStateDirs.get(agentId)!, { BACKHAUL_AGENT_TARGETS: JSON.stringify([target]) });
    procs.push(restarted);
    await restarted.waitForMsg('connected to hub', 20_000);
    const after = await qsd.objectsOf();
    expect(after.exports.filter((e) => !e.startsWith('live-'))).toEqual([]);
    expect(after.jobs).toEqual([]);
    expect(after.nodes).toEqual([]);
    expect(after.bitmaps).toEqual([]);
    expect(after.files).toEqual([]);

    // The restarted agent's Hello does not hold the job: the hub fails it AGENT_LOST at once.
    // Then a new backup of the target is whole and restorable.
    const ended = await finished(job.id, 10_000);
    expect(ended).toMatchObject({ status: 'failed', error_code: 'AGENT_LOST' });
    const before = await qsd.content('disk0');
    const again = await backup(agentId, 'vm-kill');
    const out = await tempDir('bh-restore');
    const r = await restore(again.backup_id!, agentId, [{ diskName: 'sda', path: join(out, 'again.raw') }]);
    expect(r.result!.disks[0]!.sha256).toBe(sha(before));
  });
});
