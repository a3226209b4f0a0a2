import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHUNK_SIZE, type Repository, type VerifyProgress } from '../../hub/repository/index.js';
import { backupImages, chunkData, digestsOf, tempRepository } from './fixtures.js';

let repo: Repository;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ repo, cleanup } = await tempRepository()));
afterEach(async () => cleanup());

describe('verifyBackup', () => {
  it('re-reads each distinct chunk once and reports progress in bytes up to the exact total', async () => {
    const a = chunkData(CHUNK_SIZE);
    const b = chunkData(CHUNK_SIZE);
    const tail = chunkData(1000);
    const d1 = Buffer.concat([a, Buffer.alloc(CHUNK_SIZE), b, a, tail]);
    const d2 = Buffer.concat([b, a]);
    const staged = await backupImages(repo, 'v', { d1, d2 });
    const paths = staged.disks.map((d) => d.indexPath);
    const seen: VerifyProgress[] = [];
    const result = await repo.verifyBackup(paths, { onProgress: (p) => seen.push(p) });
    expect(result).toEqual({
      ok: true,
      indexesChecked: 2,
      chunksChecked: 3,
      bytesChecked: 2 * CHUNK_SIZE + 1000,
      corrupt: [],
      missing: [],
      badIndexes: [],
    });
    expect(seen[0]).toEqual({ bytesDone: 0, bytesTotal: 2 * CHUNK_SIZE + 1000, chunksDone: 0, chunksTotal: 3 });
    expect(seen.at(-1)).toEqual({ bytesDone: 2 * CHUNK_SIZE + 1000, bytesTotal: 2 * CHUNK_SIZE + 1000, chunksDone: 3, chunksTotal: 3 });
    for (let i = 1; i < seen.length; i++) expect(seen[i].bytesDone).toBeGreaterThan(seen[i - 1].bytesDone);
  });

  it('names a chunk corrupted on disk and a missing one, with every disk and offset they break', async () => {
    const a = chunkData(CHUNK_SIZE);
    const b = chunkData(CHUNK_SIZE);
    const c = chunkData(CHUNK_SIZE);
    const d1 = Buffer.concat([a, b, a, c]);
    const d2 = Buffer.concat([Buffer.alloc(CHUNK_SIZE), a, b]);
    const staged = await backupImages(repo, 'v', { d1, d2 });
    const [p1, p2] = staged.disks.map((d) => d.indexPath);
    const digests = digestsOf(d1);
    const [da, db, dc] = [digests.hexAt(0), digests.hexAt(1), digests.hexAt(3)];

    const pathA = repo.layout.chunkPath(da);
    const file = await readFile(pathA);
    file[file.length - 10] ^= 0xff;
    await writeFile(pathA, file);
    await rm(repo.layout.chunkPath(db));

    const result = await repo.verifyBackup([p1, p2]);
    expect(result.ok).toBe(false);
    expect(result.chunksChecked).toBe(3);
    expect(result.corrupt).toHaveLength(1);
    expect(result.corrupt[0].digest).toBe(da);
    expect(['digest-mismatch', 'undecodable']).toContain(result.corrupt[0].problem);
    expect(result.corrupt[0].locations).toEqual([
      { indexPath: p1, chunkIndex: 0, offset: 0 },
      { indexPath: p1, chunkIndex: 2, offset: 2 * CHUNK_SIZE },
      { indexPath: p2, chunkIndex: 1, offset: CHUNK_SIZE },
    ]);
    expect(result.corrupt[0].locationCount).toBe(3);
    expect(result.missing).toEqual([
      {
        digest: db,
        problem: 'missing',
        locations: [
          { indexPath: p1, chunkIndex: 1, offset: CHUNK_SIZE },
          { indexPath: p2, chunkIndex: 2, offset: 2 * CHUNK_SIZE },
        ],
        locationCount: 2,
      },
    ]);
    // The intact chunk is not reported.
    expect(JSON.stringify(result)).not.toContain(dc);
  });

  it('reports unreadable and missing indexes and still checks the others', async () => {
    const staged = await backupImages(repo, 'v', { d1: chunkData(5000), d2: chunkData(6000) });
    const [p1, p2] = staged.disks.map((d) => d.indexPath);
    const bytes = await readFile(p1);
    bytes[40] ^= 1;
    await writeFile(p1, bytes);
    const gone = repo.indexPath('nope', 'd');
    const result = await repo.verifyBackup([p1, gone, p2]);
    expect(result.ok).toBe(false);
    expect(result.indexesChecked).toBe(1);
    expect(result.chunksChecked).toBe(1);
    expect(result.badIndexes.map((b) => [b.indexPath, b.code])).toEqual([
      [p1, 'INDEX_CORRUPT'],
      [gone, 'INDEX_NOT_FOUND'],
    ]);
  });

  it('stops with ABORTED when cancelled', async () => {
    const staged = await backupImages(repo, 'v', { d: Buffer.concat([chunkData(CHUNK_SIZE), chunkData(CHUNK_SIZE)]) });
    const ctl = new AbortController();
    ctl.abort();
    await expect(repo.verifyBackup([staged.disks[0].indexPath], { signal: ctl.signal })).rejects.toMatchObject({ code: 'ABORTED' });
  });
});
