import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AllocationExtent, DiskView, Extent, Snapshot } from '../../../agent/drivers/driver.js';
import { jobTag, nbdSocketFile } from '../../../agent/drivers/qemu/qemu-names.js';
import { MiB, collect, coverage, readAll, sha256 } from '../../support/qemu.js';
import { destroyRigs, randomWrites, rig, type Rig } from './harness.js';

const SIZE = 32 * MiB;

afterEach(destroyRigs);

/** Full backup, read, commit, release: returns what the view held and the next bitmap per disk. */
async function fullBackup(r: Rig, jobId: string): Promise<{ images: Buffer[]; next: Record<string, string> }> {
  const snap = await r.driver.open(r.target, { jobId, log: r.log });
  const images = await Promise.all(snap.disks.map((d) => readAll(d)));
  const next = Object.fromEntries(snap.disks.map((d) => [d.name, d.nextBitmap!]));
  await snap.committed();
  await snap.release();
  return { images, next };
}

/** Rebuilds the disk from the previous image plus the view's changed ranges, zeros via allocation. */
async function reconstruct(old: Buffer, view: DiskView): Promise<Buffer> {
  const out = Buffer.from(old);
  const alloc = await collect(view.allocation());
  for await (const c of view.changed()!) {
    for (const a of alloc) {
      const start = Math.max(a.offset, c.offset);
      const end = Math.min(a.offset + a.length, c.offset + c.length);
      if (start >= end) continue;
      if (a.zero) out.fill(0, start, end);
      else (await view.read(start, end - start)).copy(out, start);
    }
  }
  return out;
}

const granularity = async (r: Rig, node: string, bitmap: string) => (await r.qsd.bitmaps(node)).find((b) => b.name === bitmap)!.granularity;

function expectContiguous(extents: AllocationExtent[], size: number) {
  let at = 0;
  for (const e of extents) {
    expect(e.offset).toBe(at);
    expect(e.length).toBeGreaterThan(0);
    at += e.length;
  }
  expect(at).toBe(size);
}

describe('QemuDriver point-in-time views', () => {
  it('reads the disk as it was at open(), while the guest keeps writing', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }] });
    await randomWrites(r.qsd, 'disk0', SIZE, 10, 1);
    const before = await r.qsd.content('disk0');

    const snap = await r.driver.open(r.target, { jobId: 'job-pit', log: r.log });
    try {
      const [view] = snap.disks as [DiskView];
      expect(view).toMatchObject({ name: 'sda', sizeBytes: SIZE, fullReadReason: null });
      expect(view.changed()).toBeNull();
      expect(view.nextBitmap).toMatch(/^bh-[0-9a-f]{12}-sda-33554432$/);

      // Read in 4 MiB pieces, with a guest write landing between every two reads.
      const pieces: Buffer[] = [];
      const written: Extent[] = [];
      for (let at = 0; at < SIZE; at += 4 * MiB) {
        const w = { offset: (at + 3 * MiB + 12_345) % (SIZE - 2 * MiB), length: 2 * MiB };
        await r.qsd.write('disk0', w.offset, randomBytes(w.length));
        written.push(w);
        pieces.push(await view.read(at, 4 * MiB));
      }
      const after = await r.qsd.content('disk0');
      expect(sha256(after)).not.toBe(sha256(before));
      expect(sha256(Buffer.concat(pieces))).toBe(sha256(before));

      // Allocation covers the disk; zero ranges read as zeros; written ranges are data.
      const alloc = await collect(view.allocation());
      expectContiguous(alloc, SIZE);
      for (const z of alloc.filter((a) => a.zero)) expect(before.subarray(z.offset, z.offset + z.length).every((b) => b === 0)).toBe(true);
      expect(alloc.some((a) => !a.zero)).toBe(true);

      // The next bitmap records from the instant: it saw the writes made while reading.
      const next = (await r.qsd.bitmaps('disk0')).find((b) => b.name === view.nextBitmap)!;
      expect(next).toMatchObject({ recording: true, persistent: true });
      expect(next.count).toBeGreaterThanOrEqual(written.length * 2 * MiB - 64 * 1024);
    } finally {
      await snap.release();
    }
  });

  it('gives two disks one instant', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }, { node: 'disk1', sizeBytes: 16 * MiB }] });
    await randomWrites(r.qsd, 'disk0', SIZE, 5, 2);
    await randomWrites(r.qsd, 'disk1', 16 * MiB, 5, 3);
    const before = [await r.qsd.content('disk0'), await r.qsd.content('disk1')];

    const snap = await r.driver.open(r.target, { jobId: 'job-two', log: r.log });
    try {
      await r.qsd.write('disk0', 0, randomBytes(8 * MiB));
      await r.qsd.write('disk1', 4 * MiB, randomBytes(8 * MiB));
      expect(snap.disks.map((d) => [d.name, d.sizeBytes])).toEqual([
        ['sda', SIZE],
        ['sdb', 16 * MiB],
      ]);
      for (const [i, view] of snap.disks.entries()) expect(sha256(await readAll(view))).toBe(sha256(before[i]!));
      expect(sha256(await r.qsd.content('disk1'))).not.toBe(sha256(before[1]!));
    } finally {
      await snap.release();
    }
  });

  it('starts and stops its own NBD server when the target names none', async () => {
    const r = await rig({
      disks: [{ node: 'disk0', sizeBytes: SIZE, prefill: [{ offset: MiB, length: 3 * MiB, pattern: 0x42 }] }],
      liveExports: false,
    });
    const expected = Buffer.alloc(SIZE);
    expected.fill(0x42, MiB, 4 * MiB);
    const snap = await r.driver.open(r.target, { jobId: 'job-own-nbd', log: r.log });
    const sock = (await r.qsd.objectsOf(jobTag('job-own-nbd'))).files.find((f) => f.endsWith(nbdSocketFile(jobTag('job-own-nbd'))));
    expect(sock && existsSync(sock)).toBe(true);
    expect(sha256(await readAll(snap.disks[0]!))).toBe(sha256(expected));
    expect(await collect(snap.disks[0]!.allocation())).toEqual([
      { offset: 0, length: MiB, zero: true },
      { offset: MiB, length: 3 * MiB, zero: false },
      { offset: 4 * MiB, length: SIZE - 4 * MiB, zero: true },
    ]);
    await snap.release();
    expect(existsSync(sock!)).toBe(false);
    // The server is gone: QEMU accepts a new one.
    await r.qsd.qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: join(r.qsd.dir, 'again.sock') } } });
    await r.qsd.qmp.execute('nbd-server-stop');
  });
});

describe('QemuDriver incrementals', () => {
  it('lists exactly the ranges written since the committed base, and they rebuild the new disk', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }] });
    await randomWrites(r.qsd, 'disk0', SIZE, 8, 4);
    const first = await fullBackup(r, 'job-inc-1');
    expect((await r.qsd.bitmaps('disk0')).map((b) => b.name)).toEqual([first.next.sda]);

    const writes = await randomWrites(r.qsd, 'disk0', SIZE, 25, 5);
    const now = await r.qsd.content('disk0');
    const grain = await granularity(r, 'disk0', first.next.sda!);
    expect(grain).toBe(64 * 1024);

    const snap = await r.driver.open(r.target, { jobId: 'job-inc-2', baseBitmaps: first.next, log: r.log });
    try {
      const view = snap.disks[0]!;
      expect(view.fullReadReason).toBeNull();
      const changed = await collect(view.changed()!);
      expect(changed).toEqual(coverage(writes, grain));
      expect(sha256(await reconstruct(first.images[0]!, view))).toBe(sha256(now));
      expect(r.logs.filter((l) => l.level === 'warn')).toEqual([]);

      await snap.committed();
      const names = (await r.qsd.bitmaps('disk0')).map((b) => b.name);
      expect(names).toEqual([view.nextBitmap]); // the base is retired, next is the new base
    } finally {
      await snap.release();
    }
  });

  it('after abandoned(), the next incremental still sees every change since the last commit', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }] });
    const first = await fullBackup(r, 'job-ab-1');
    const w1 = await randomWrites(r.qsd, 'disk0', SIZE, 6, 6);

    const failed = await r.driver.open(r.target, { jobId: 'job-ab-2', baseBitmaps: first.next, log: r.log });
    await failed.disks[0]!.read(0, MiB);
    const w2 = await randomWrites(r.qsd, 'disk0', SIZE, 6, 7); // recorded by job-ab-2's next bitmap only
    await failed.abandoned();
    const after = await r.qsd.bitmaps('disk0');
    expect(after.map((b) => [b.name, b.recording])).toEqual([[first.next.sda, true]]);

    const w3 = await randomWrites(r.qsd, 'disk0', SIZE, 6, 8);
    const now = await r.qsd.content('disk0');
    const snap = await r.driver.open(r.target, { jobId: 'job-ab-3', baseBitmaps: first.next, log: r.log });
    try {
      const grain = await granularity(r, 'disk0', first.next.sda!);
      expect(await collect(snap.disks[0]!.changed()!)).toEqual(coverage([...w1, ...w2, ...w3], grain));
      expect(sha256(await reconstruct(first.images[0]!, snap.disks[0]!))).toBe(sha256(now));
    } finally {
      await snap.abandoned();
    }
  });
  it('gives a raw disk a bitmap that lasts while QEMU runs, and says so', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE, format: 'raw' }] });
    const first = await fullBackup(r, 'job-raw-1');
    expect(r.logs.some((l) => l.level === 'warn' && /sda \(node disk0\) is not qcow2/.test(l.message))).toBe(true);
    expect((await r.qsd.bitmaps('disk0')).map((b) => [b.name, b.persistent, b.recording])).toEqual([[first.next.sda, false, true]]);
    const writes = await randomWrites(r.qsd, 'disk0', SIZE, 5, 14);
    const now = await r.qsd.content('disk0');
    const snap = await r.driver.open(r.target, { jobId: 'job-raw-2', baseBitmaps: first.next, log: r.log });
    try {
      const grain = await granularity(r, 'disk0', first.next.sda!);
      expect(await collect(snap.disks[0]!.changed()!)).toEqual(coverage(writes, grain));
      expect(sha256(await reconstruct(first.images[0]!, snap.disks[0]!))).toBe(sha256(now));
    } finally {
      await snap.abandoned();
    }
  });
});

describe('QemuDriver falls back to a full read, and still starts the chain', () => {
  async function expectFullRead(snap: Snapshot, disk: string, reason: RegExp, r: Rig) {
    const view = snap.disks.find((d) => d.name === disk)!;
    expect(view.fullReadReason).toMatch(reason);
    expect(view.changed()).toBeNull();
    expect(r.logs.some((l) => l.level === 'warn' && reason.test(l.message) && l.message.includes(disk))).toBe(true);
    const next = (await r.qsd.bitmaps(r.target.disks.find((d) => d.name === disk)!.path)).find((b) => b.name === view.nextBitmap);
    expect(next?.recording).toBe(true);
  }

  it('when the base bitmap was deleted, and for a disk that is new', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }, { node: 'disk1', sizeBytes: 16 * MiB }] });
    await randomWrites(r.qsd, 'disk0', SIZE, 4, 9);
    const first = await fullBackup(r, 'job-fb-1');
    await r.qsd.qmp.execute('block-dirty-bitmap-remove', { node: 'disk0', name: first.next.sda });
    const now = await r.qsd.content('disk0');

    const snap = await r.driver.open(r.target, { jobId: 'job-fb-2', baseBitmaps: { sda: first.next.sda! }, log: r.log });
    try {
      await expectFullRead(snap, 'sda', /base bitmap bh-[0-9a-f]{12}-sda-\d+ on node disk0 is missing/, r);
      await expectFullRead(snap, 'sdb', /no base bitmap for disk sdb: it is new/, r);
      expect(sha256(await readAll(snap.disks[0]!))).toBe(sha256(now));
      await snap.committed();
      expect((await r.qsd.bitmaps('disk0')).map((b) => b.name)).toEqual([snap.disks[0]!.nextBitmap]);
    } finally {
      await snap.release();
    }
  });

  it('when the base bitmap is inconsistent after QEMU died, removing it', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }] });
    const first = await fullBackup(r, 'job-inc-bad-1');
    await r.qsd.stop('SIGTERM'); // writes the bitmap into the image
    await r.qsd.launch(); // marks it in use
    await r.qsd.stop('SIGKILL'); // leaves it marked
    await r.qsd.launch();
    expect((await r.qsd.bitmaps('disk0')).find((b) => b.name === first.next.sda)?.inconsistent).toBe(true);

    const snap = await r.driver.open(r.target, { jobId: 'job-inc-bad-2', baseBitmaps: first.next, log: r.log });
    try {
      await expectFullRead(snap, 'sda', /is inconsistent/, r);
      expect((await r.qsd.bitmaps('disk0')).map((b) => b.name)).toEqual([snap.disks[0]!.nextBitmap]);
    } finally {
      await snap.abandoned();
    }
  });

  it('when the disk was resized since the base', async () => {
    const r = await rig({ disks: [{ node: 'disk0', sizeBytes: SIZE }], liveExports: false });
    const first = await fullBackup(r, 'job-rs-1');
    await r.qsd.qmp.execute('block_resize', { 'node-name': 'disk0', size: 2 * SIZE });
    // QEMU resized the bitmap silently: nothing but its name tells the old size.
    const resized = (await r.qsd.bitmaps('disk0')).find((b) => b.name === first.next.sda);
    expect(resized?.recording).toBe(true);
    expect(resized?.inconsistent).toBeFalsy();

    const snap = await r.driver.open(r.target, { jobId: 'job-rs-2', baseBitmaps: first.next, log: r.log });
    try {
      await expectFullRead(snap, 'sda', new RegExp(`resized from ${SIZE} to ${2 * SIZE} bytes`), r);
      expect(snap.disks[0]!.sizeBytes).toBe(2 * SIZE);
    } finally {
      await snap.abandoned();
    }
  });
});
