import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHUNK_SIZE, DigestList, zeroChunkDigest, ZERO_DIGEST_HEX, type Repository } from '../../hub/repository/index.js';
import { age, backupImages, chunkData, digestsOf, putPlain, rejection, restoreImage, sha256Hex, tempRepository } from './fixtures.js';

let repo: Repository;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ repo, cleanup } = await tempRepository()));
afterEach(async () => cleanup());

/** A 4-chunk-and-a-bit image: data, zeros, data, a repeat of chunk 0, a short data tail. */
function image(): Buffer {
  const a = chunkData(CHUNK_SIZE);
  return Buffer.concat([a, Buffer.alloc(CHUNK_SIZE), chunkData(CHUNK_SIZE), a, chunkData(123_457)]);
}

describe('commit: stage, publish, discard', () => {
  it('backs up and restores two disks bit for bit; zero chunks are not stored and repeats stored once', async () => {
    const sys = image();
    const data = Buffer.concat([chunkData(CHUNK_SIZE), Buffer.alloc(CHUNK_SIZE + 10)]);
    const staged = await backupImages(repo, 'b-1', { sys, data }, new Date('2025-01-01T00:00:00Z'));
    expect(staged.disks.map((d) => [d.diskId, d.chunkCount, d.zeroChunks, d.relativePath])).toEqual([
      ['sys', 5, 1, 'indexes/b-1/sys.bhidx'],
      ['data', 3, 2, 'indexes/b-1/data.bhidx'],
    ]);
    expect(staged.distinctChunks).toBe(4);
    let files = 0;
    for (const d of await readdir(repo.layout.chunksDir)) files += (await readdir(join(repo.layout.chunksDir, d))).length;
    expect(files).toBe(4);
    expect(await repo.listBackups()).toEqual(['b-1']);
    expect(await readdir(repo.layout.stagingDir)).toEqual([]);

    const restoredSys = await restoreImage(repo, staged.disks[0].indexPath);
    expect(sha256Hex(restoredSys)).toBe(sha256Hex(sys));
    expect(sha256Hex(await restoreImage(repo, repo.resolveIndexPath(staged.disks[1].relativePath)))).toBe(sha256Hex(data));
    const index = await repo.readIndex(staged.disks[0].indexPath);
    expect(index.createdAt.toISOString()).toBe('2025-01-01T00:00:00.000Z');
    expect(index.digests.hexAt(1)).toBe(ZERO_DIGEST_HEX);
    expect(index.digests.hexAt(3)).toBe(index.digests.hexAt(0));
  });

  it('rewrites the hash of an all-zero chunk (full or short tail) to the zero marker', async () => {
    const stored = await putPlain(repo, chunkData(CHUNK_SIZE));
    const diskSize = 2 * CHUNK_SIZE + 500;
    const digests = DigestList.fromHex([
      zeroChunkDigest(CHUNK_SIZE).toString('hex'),
      stored.digest,
      zeroChunkDigest(500).toString('hex'),
    ]);
    const staged = await repo.stageBackup({ backupId: 'z', createdAt: new Date(), disks: [{ diskId: 'd', diskSize, digests }] });
    await repo.publishBackup(staged);
    expect(staged.disks[0].zeroChunks).toBe(2);
    expect((await repo.readIndex(staged.disks[0].indexPath)).digests.toHex()).toEqual([ZERO_DIGEST_HEX, stored.digest, ZERO_DIGEST_HEX]);
    // The caller's list is left as it was.
    expect(digests.hexAt(0)).toBe(zeroChunkDigest(CHUNK_SIZE).toString('hex'));
  });

  it('refuses to commit when a named chunk is missing, listing exactly the missing ones, and writes nothing', async () => {
    const img = image();
    const digests = digestsOf(img);
    await putPlain(repo, img.subarray(0, CHUNK_SIZE));
    const absent = [digests.hexAt(2), digests.hexAt(4)].sort();
    const err = await rejection(
      repo.stageBackup({ backupId: 'b-2', createdAt: new Date(), disks: [{ diskId: 'sys', diskSize: img.length, digests }] }),
    );
    expect(err.code).toBe('CHUNK_MISSING');
    expect(err.details).toEqual({ digests: absent, count: 2 });
    expect(await readdir(repo.layout.stagingDir)).toEqual([]);
    expect(await repo.listBackups()).toEqual([]);
  });

  it('touches every chunk it commits, so a concurrent garbage collection keeps them', async () => {
    const { digest } = await putPlain(repo, chunkData(1000));
    await age(repo.layout.chunkPath(digest), 7 * 86_400_000);
    const digests = DigestList.fromHex([digest]);
    await repo.stageBackup({ backupId: 't', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: 1000, digests }] });
    expect(Date.now() - (await stat(repo.layout.chunkPath(digest))).mtimeMs).toBeLessThan(60_000);
  });

  it('never overwrites a published backup, and discard removes published and staged copies', async () => {
    const img = chunkData(CHUNK_SIZE + 5);
    const first = await backupImages(repo, 'b-3', { d: img });
    expect((await rejection(backupImages(repo, 'b-3', { d: img }))).code).toBe('BACKUP_EXISTS');

    // Two stages racing for the same id: the second publish loses.
    await repo.discardBackup('b-3');
    const s1 = await repo.stageBackup({ backupId: 'b-3', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: img.length, digests: digestsOf(img) }] });
    const s2 = await repo.stageBackup({ backupId: 'b-3', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: img.length, digests: digestsOf(img) }] });
    await repo.publishBackup(s1);
    const lost = await rejection(repo.publishBackup(s2));
    expect(lost.code).toBe('BACKUP_EXISTS');
    expect(lost.details).toEqual({ backupId: 'b-3' });
    expect(await repo.discardBackup('b-3')).toEqual({ published: true, staged: 1 });
    expect(await repo.listBackups()).toEqual([]);
    expect(await readdir(repo.layout.stagingDir)).toEqual([]);
    expect((await rejection(repo.readIndex(first.disks[0].indexPath))).code).toBe('INDEX_NOT_FOUND');
    expect(await repo.discardBackup('b-3')).toEqual({ published: false, staged: 0 });
    // The chunks stay until garbage collection.
    expect(await repo.missingChunks(digestsOf(img).toHex())).toEqual([]);
  });

  it('says BACKUP_NOT_STAGED when publishing a stage that was discarded', async () => {
    const { digest } = await putPlain(repo, chunkData(10));
    const staged = await repo.stageBackup({ backupId: 'gone', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: 10, digests: DigestList.fromHex([digest]) }] });
    expect(await repo.discardBackup('gone')).toEqual({ published: false, staged: 1 });
    const err = await rejection(repo.publishBackup(staged));
    expect(err.code).toBe('BACKUP_NOT_STAGED');
    expect(await repo.listBackups()).toEqual([]);
  });

  it('validates ids, sizes and digest counts before touching anything', async () => {
    const one = DigestList.fromHex([sha256Hex(randomBytes(8))]);
    const cases: [Parameters<Repository['stageBackup']>[0], string][] = [
      [{ backupId: '../x', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: 1, digests: one }] }, 'backupId'],
      [{ backupId: 'b', createdAt: new Date(), disks: [{ diskId: 'a/b', diskSize: 1, digests: one }] }, 'diskId'],
      [{ backupId: 'b', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: 1, digests: one }, { diskId: 'd', diskSize: 1, digests: one }] }, 'diskId'],
      [{ backupId: 'b', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: CHUNK_SIZE + 1, digests: one }] }, 'digests'],
      [{ backupId: 'b', createdAt: new Date(), disks: [{ diskId: 'd', diskSize: -1, digests: one }] }, 'diskSize of d'],
      [{ backupId: 'b', createdAt: new Date(), disks: [] }, 'disks'],
    ];
    for (const [req, argument] of cases) {
      const err = await rejection(repo.stageBackup(req));
      expect(err.code, argument).toBe('INVALID_ARGUMENT');
      expect(err.details, argument).toEqual({ argument });
    }
    expect(() => repo.resolveIndexPath('indexes/../../etc/passwd.bhidx')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(repo.resolveIndexPath('indexes/b/d.bhidx')).toBe(join(repo.root, 'indexes', 'b', 'd.bhidx'));
  });
});
