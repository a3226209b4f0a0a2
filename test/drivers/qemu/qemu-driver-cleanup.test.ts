import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DriverError } from '../../../agent/drivers/driver.js';
import { QemuDriver } from '../../../agent/drivers/qemu/qemu-driver.js';
import { jobTag } from '../../../agent/drivers/qemu/qemu-names.js';
import { MiB, collect, coverage, readAll } from '../../support/qemu.js';
import { destroyRigs, randomWrites, rig, type Rig } from './harness.js';

const SIZE = 16 * MiB;
const NOTHING = { exports: [], nodes: [], jobs: [], bitmaps: [], files: [] };

afterEach(destroyRigs);

/** A committed full backup, so that later jobs have a base; returns its next bitmaps. */
async function committedBase(r: Rig, jobId: string): Promise<Record<string, string>> {
  const snap = await r.driver.open(r.target, { jobId });
  const next = Object.fromEntries(snap.disks.map((d) => [d.name, d.nextBitmap!]));
  await snap.committed();
  return next;
}

describe('QemuDriver release', () => {
  it('leaves only the new base bitmap after a successful job, whatever the order, and can be repeated', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }, { node: 'disk1', sizeBytes: SIZE }] });
    const base = await committedBase(r, 'job-r-1');
    const tag = jobTag('job-r-2');
    const snap = await r.driver.open(r.target, { jobId: 'job-r-2', baseBitmaps: base });

    const during = await r.qsd.objectsOf(tag);
    expect(during.exports).toHaveLength(2);
    expect(during.jobs).toHaveLength(2);
    expect(during.nodes.length).toBeGreaterThanOrEqual(8); // overlay, its file, filter, view per disk
    expect(during.files.filter((f) => f.endsWith('.fleece'))).toHaveLength(2);

    await readAll(snap.disks[1]!);
    await snap.release();
    await snap.release();
    await snap.committed();
    await snap.release();
    const after = await r.qsd.objectsOf(tag);
    expect({ ...after, bitmaps: after.bitmaps.sort() }).toEqual({ ...NOTHING, bitmaps: snap.disks.map((d) => d.nextBitmap).sort() });
    for (const node of ['disk0', 'disk1']) expect((await r.qsd.bitmaps(node)).map((b) => [b.name!.slice(0, 15), b.recording])).toEqual([[`bh-${tag}`, true]]);
    await expect(snap.abandoned()).rejects.toMatchObject({ code: 'SNAPSHOT_FAILED' });
    await expect(snap.disks[0]!.read(0, 512)).rejects.toMatchObject({ code: 'READ_FAILED' });
  });

  it('undoes a half-done open, bitmaps included, and reports why it failed', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }, { node: 'disk1', sizeBytes: SIZE }] });
    const base = await committedBase(r, 'job-f-1');
    // The exports go to the daemon's server, but the driver is told a wrong socket: open fails
    // at its last step, after the transaction froze the bases and started the backup jobs.
    const broken = { ...r.target, options: { ...r.target.options, nbdSocket: join(r.qsd.dir, 'wrong.sock') } };
    const err = await r.driver.open(broken, { jobId: 'job-f-2', baseBitmaps: base }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect(err).toMatchObject({ code: 'SNAPSHOT_FAILED', message: expect.stringMatching(/cannot connect to NBD server at .*wrong\.sock/) });

    expect(await r.qsd.objectsOf(jobTag('job-f-2'))).toEqual(NOTHING);
    for (const [disk, node] of [
      ['sda', 'disk0'],
      ['sdb', 'disk1'],
    ] as const) {
      expect((await r.qsd.bitmaps(node)).map((b) => [b.name, b.recording])).toEqual([[base[disk], true]]);
    }
    // And the chain still works from the untouched base.
    const w = await randomWrites(r.qsd, 'disk1', SIZE, 3, 11);
    const snap = await r.driver.open(r.target, { jobId: 'job-f-3', baseBitmaps: base });
    expect(await collect(snap.disks[1]!.changed()!)).toEqual(coverage(w, 64 * 1024));
    await snap.abandoned();
  });

  it('refuses a disk QEMU does not have, creating nothing', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }] });
    const target = { ...r.target, disks: [...r.target.disks, { name: 'sdz', path: 'no-such-node' }] };
    await expect(r.driver.open(target, { jobId: 'job-nf' })).rejects.toMatchObject({ code: 'DISK_NOT_FOUND', message: expect.stringContaining('no-such-node') });
    expect(await r.qsd.objectsOf()).toEqual(NOTHING);
    await expect(r.driver.open({ ...r.target, options: { qmpSocket: join(r.qsd.dir, 'nope.qmp') } }, { jobId: 'job-nf' })).rejects.toMatchObject({
      code: 'TARGET_UNREACHABLE',
    });
  });

  it('cleans up after the backup job was cancelled behind its back, and stops serving a view that is no longer frozen', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }] });
    const tag = jobTag('job-k');
    const snap = await r.driver.open(r.target, { jobId: 'job-k' });
    await snap.disks[0]!.read(0, MiB);
    const [job] = (await r.qsd.objectsOf(tag)).jobs;
    const ended = r.qsd.qmp.waitForEvent('BLOCK_JOB_CANCELLED', (e) => e.data.device === job, 5_000);
    await r.qsd.qmp.execute('block-job-cancel', { device: job, force: true });
    await ended;
    await r.qsd.write('disk0', 0, Buffer.alloc(MiB, 0xee));

    // Without its copy-before-write filter the view would show live data; it fails instead.
    const err = await snap.disks[0]!.read(0, MiB).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'READ_FAILED', message: expect.stringMatching(/disk sda: read of 1048576 bytes at 0 failed: .*ENOTSUP/) });
    expect((err as Error).message).toContain(`the point-in-time view is gone (did block job ${job} end?)`);

    await snap.release();
    await snap.abandoned();
    expect(await r.qsd.objectsOf(tag)).toEqual(NOTHING);
  });
});

describe('QemuDriver cleanupLeftovers', () => {
  it('removes what a killed agent left, and merges its next bitmap back into the base', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }, { node: 'disk1', sizeBytes: SIZE }] });
    const base = await committedBase(r, 'job-c-1');
    const w1 = await randomWrites(r.qsd, 'disk0', SIZE, 4, 12);
    const tag = jobTag('job-c-2');

    // The agent opens, reads a little, and dies: nothing is ever released.
    const leaked = await r.driver.open(r.target, { jobId: 'job-c-2', baseBitmaps: base });
    await leaked.disks[0]!.read(0, MiB);
    const w2 = await randomWrites(r.qsd, 'disk0', SIZE, 4, 13); // only in job-c-2's next bitmap
    const left = await r.qsd.objectsOf(tag);
    expect(left.exports.length + left.nodes.length + left.jobs.length + left.files.length).toBeGreaterThan(0);

    // A restarted agent: a new driver, new QMP connections. A live job is never touched.
    const fresh = new QemuDriver({ runtimeDir: r.qsd.runtimeDir });
    expect(await fresh.cleanupLeftovers(r.target, new Set(['job-c-2']))).toEqual([]);
    expect(await r.qsd.objectsOf(tag)).toEqual(left);

    const removed = await fresh.cleanupLeftovers(r.target, new Set());
    expect(removed).toEqual(
      expect.arrayContaining([
        `export bh-${tag}-ex0`,
        `export bh-${tag}-ex1`,
        `block job bh-${tag}-bk0`,
        `node bh-${tag}-fl1`,
        `overlay file bh-${tag}-fl0.fleece`,
        expect.stringMatching(new RegExp(`bitmap bh-${tag}-sda-\\d+ merged into ${base.sda} on disk0`)),
      ]),
    );
    expect(await r.qsd.objectsOf(tag)).toEqual(NOTHING);
    expect(await fresh.cleanupLeftovers(r.target, new Set())).toEqual([]);

    // The next incremental from the old base sees the changes from both sides of the dead job's instant.
    const snap = await r.driver.open(r.target, { jobId: 'job-c-3', baseBitmaps: base });
    expect(await collect(snap.disks[0]!.changed()!)).toEqual(coverage([...w1, ...w2], 64 * 1024));
    await snap.abandoned();
  });

  it('stops the NBD server a dead job started, and without a journal still restores a frozen base', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }], liveExports: false });
    const base = await committedBase(r, 'job-j-1');
    const tag = jobTag('job-j-2');
    await r.driver.open(r.target, { jobId: 'job-j-2', baseBitmaps: base });
    const files = (await r.qsd.objectsOf(tag)).files;
    const sock = files.find((f) => f.endsWith('.nbd.sock'))!;
    // The runtime directory lost the journal (say, it was on tmpfs).
    await rm(files.find((f) => f.endsWith('.journal.json'))!);
    const frozen = (await r.qsd.bitmaps('disk0')).map((b) => [b.name, b.recording]);
    expect(frozen).toHaveLength(2);
    expect(frozen).toEqual(expect.arrayContaining([[base.sda, false], [expect.stringMatching(`^bh-${tag}-sda-`), true]]));

    const removed = await new QemuDriver({ runtimeDir: r.qsd.runtimeDir }).cleanupLeftovers(r.target, new Set());
    expect(removed).toContain(`NBD server on ${sock}`);
    expect(existsSync(sock)).toBe(false);
    expect(await r.qsd.objectsOf(tag)).toEqual(NOTHING);
    expect((await r.qsd.bitmaps('disk0')).map((b) => [b.name, b.recording])).toEqual([[base.sda, true]]);
    // The server is gone: the next job starts its own.
    const snap = await r.driver.open(r.target, { jobId: 'job-j-3', baseBitmaps: base });
    expect(snap.disks[0]!.fullReadReason).toBeNull();
    await snap.abandoned();
  });
});
