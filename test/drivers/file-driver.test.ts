import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DriverError } from '../../agent/drivers/driver.js';
import { FileDriver } from '../../agent/drivers/file/file-driver.js';

const MiB = 1024 * 1024;

describe('file driver', () => {
  it('reads a raw image exactly, for every disk of the target, and releases what it made', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bh-file-'));
    const a = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(2 * MiB), randomBytes(MiB + 123)]);
    const b = randomBytes(MiB);
    await writeFile(join(dir, 'a.raw'), a);
    await writeFile(join(dir, 'b.raw'), b);
    const notes: string[] = [];
    const driver = new FileDriver();
    const snap = await driver.open(
      { id: 'vm', driver: 'file', disks: [{ name: 'a', path: join(dir, 'a.raw') }, { name: 'b', path: join(dir, 'b.raw') }] },
      { jobId: randomUUID(), baseBitmaps: { a: 'whatever' }, log: (_l, m) => notes.push(m) },
    );
    expect(snap.disks.map((d) => [d.name, d.sizeBytes])).toEqual([
      ['a', a.length],
      ['b', b.length],
    ]);
    for (const [view, src] of [
      [snap.disks[0]!, a],
      [snap.disks[1]!, b],
    ] as const) {
      const h = createHash('sha256');
      for await (const e of view.allocation()) h.update(e.zero ? Buffer.alloc(e.length) : await view.read(e.offset, e.length));
      expect(h.digest('hex')).toBe(createHash('sha256').update(src).digest('hex'));
      expect(view.changed()).toBeNull();
    }
    expect(snap.disks[0]!.fullReadReason).toMatch(/no change tracking/);
    expect(snap.disks[1]!.fullReadReason).toBeNull();
    await expect(snap.disks[1]!.read(b.length - 10, 20)).rejects.toThrow(/short read/);
    await snap.release();
    await snap.release();
    expect((await readdir(dir)).sort()).toEqual(['a.raw', 'b.raw']);
  });

  it('refuses a missing disk with DISK_NOT_FOUND and leaves nothing behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bh-file-'));
    await writeFile(join(dir, 'a.raw'), randomBytes(1024));
    const err = await new FileDriver()
      .open({ id: 'vm', driver: 'file', disks: [{ name: 'a', path: join(dir, 'a.raw') }, { name: 'b', path: join(dir, 'nope.raw') }] }, { jobId: randomUUID() })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DriverError);
    expect((err as DriverError).code).toBe('DISK_NOT_FOUND');
    expect(await readdir(dir)).toEqual(['a.raw']);
  });

  it('cleanupLeftovers removes clones of jobs that no longer run, and keeps live ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bh-file-'));
    await writeFile(join(dir, 'a.raw'), randomBytes(1024));
    const dead = randomUUID();
    const live = randomUUID();
    await writeFile(join(dir, `.backhaul-clone-${dead}-a`), 'x');
    await writeFile(join(dir, `.backhaul-clone-${live}-a`), 'x');
    const removed = await new FileDriver().cleanupLeftovers({ id: 'vm', driver: 'file', disks: [{ name: 'a', path: join(dir, 'a.raw') }] }, new Set([live]));
    expect(removed).toEqual([join(dir, `.backhaul-clone-${dead}-a`)]);
    expect((await readdir(dir)).sort()).toEqual([`.backhaul-clone-${live}-a`, 'a.raw']);
  });
});
