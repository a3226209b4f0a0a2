import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHUNK_SIZE, Repository, type GcProgress } from '../../hub/repository/index.js';
import { removeStaleChunk } from '../../hub/repository/garbage-collector.js';
import { age, backupImages, chunkData, digestsOf, putPlain, rejection, restoreImage, sha256Hex, tempRepository } from './fixtures.js';

let repo: Repository;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ repo, cleanup } = await tempRepository()));
afterEach(async () => cleanup());

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function allChunks(): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(repo.layout.chunksDir)) out.push(...(await readdir(join(repo.layout.chunksDir, d))));
  return out.sort();
}

async function fileSize(digest: string): Promise<number> {
  return (await stat(repo.layout.chunkPath(digest))).size;
}

describe('collectGarbage', () => {
  it('frees exactly the unreferenced chunks past the grace; kept backups still restore and verify', async () => {
    const shared = chunkData(CHUNK_SIZE);
    const onlyKept = chunkData(CHUNK_SIZE);
    const onlyPruned = chunkData(CHUNK_SIZE);
    const imgKept = Buffer.concat([shared, Buffer.alloc(CHUNK_SIZE), onlyKept, chunkData(777)]);
    const imgPruned = Buffer.concat([shared, onlyPruned]);
    const kept = await backupImages(repo, 'kept', { sys: imgKept });
    await backupImages(repo, 'pruned', { sys: imgPruned });
    await repo.discardBackup('pruned');
    const orphanOld = await putPlain(repo, chunkData(100_000)); // uploaded by a backup that never committed
    const orphanFresh = await putPlain(repo, chunkData(100_001)); // uploaded by a backup still running
    const dPruned = sha256Hex(onlyPruned);
    const keptDigests = digestsOf(imgKept).toHex().filter((d) => !/^0+$/.test(d));

    // Everything is a week old except the in-flight upload; referenced chunks too.
    for (const d of await allChunks()) if (d !== orphanFresh.digest) await age(repo.layout.chunkPath(d), 7 * DAY);
    const freed = (await fileSize(dPruned)) + (await fileSize(orphanOld.digest));
    const before = await allChunks();

    const progress: GcProgress[] = [];
    const result = await repo.collectGarbage({
      liveIndexPaths: kept.disks.map((d) => d.indexPath),
      graceMs: DAY,
      onProgress: (p) => progress.push(p),
    });
    expect(result).toMatchObject({
      liveIndexes: 1,
      markedChunks: 3,
      scannedChunks: before.length,
      removedChunks: 2,
      removedBytes: freed,
      keptFresh: 1,
      unreferencedIndexPaths: [],
      unknownEntries: [],
      restoredFromTrash: 0,
    });
    expect(await allChunks()).toEqual([...keptDigests, orphanFresh.digest].sort());
    expect(progress[0]).toEqual({ phase: 'mark', done: 1, total: 1 });
    expect(progress.at(-1)).toEqual({ phase: 'sweep', done: 256, total: 256 });
    expect(await readdir(repo.layout.trashDir)).toEqual([]);

    // A restore of the kept backup reads (and verifies) every chunk and gives back the same bytes.
    expect(sha256Hex(await restoreImage(repo, kept.disks[0].indexPath))).toBe(sha256Hex(imgKept));
    expect((await repo.verifyBackup(kept.disks.map((d) => d.indexPath))).ok).toBe(true);

    // A second run finds nothing more to do.
    const again = await repo.collectGarbage({ liveIndexPaths: kept.disks.map((d) => d.indexPath), graceMs: DAY });
    expect(again).toMatchObject({ removedChunks: 0, removedBytes: 0, keptFresh: 1 });
  });

  it('never deletes a marked chunk, however old, and keeps an old chunk that a backup just found present', async () => {
    const img = chunkData(3 * CHUNK_SIZE);
    const live = await backupImages(repo, 'live', { d: img });
    const unreferenced = await putPlain(repo, chunkData(9_999));
    for (const d of await allChunks()) await age(repo.layout.chunkPath(d), 365 * DAY);
    // A running backup asks for it: it is touched, so the grace now protects it.
    expect(await repo.missingChunks([unreferenced.digest])).toEqual([]);
    const result = await repo.collectGarbage({ liveIndexPaths: [live.disks[0].indexPath], graceMs: HOUR });
    expect(result).toMatchObject({ removedChunks: 0, keptFresh: 1, markedChunks: 3 });
    expect(await allChunks()).toHaveLength(4);
  });

  it('with grace 0 and a clock past the writes, removes every unreferenced chunk', async () => {
    const a = await putPlain(repo, chunkData(10));
    const b = await putPlain(repo, chunkData(11));
    const result = await repo.collectGarbage({ liveIndexPaths: [], graceMs: 0, now: new Date(Date.now() + 1000) });
    expect(result).toMatchObject({ removedChunks: 2, markedChunks: 0 });
    expect(await repo.missingChunks([a.digest, b.digest])).toEqual([a.digest, b.digest]);
  });

  it('aborts before deleting anything if a live index is missing or corrupt', async () => {
    const live = await backupImages(repo, 'live', { d: chunkData(CHUNK_SIZE) });
    await putPlain(repo, chunkData(50));
    for (const d of await allChunks()) await age(repo.layout.chunkPath(d), 30 * DAY);
    const before = await allChunks();
    const path = live.disks[0].indexPath;
    const bytes = await readFile(path);
    bytes[50] ^= 4;
    await writeFile(path, bytes);
    expect((await rejection(repo.collectGarbage({ liveIndexPaths: [path], graceMs: HOUR }))).code).toBe('INDEX_CORRUPT');
    const gone = repo.indexPath('gone', 'd');
    expect((await rejection(repo.collectGarbage({ liveIndexPaths: [gone], graceMs: HOUR }))).code).toBe('INDEX_NOT_FOUND');
    expect(await allChunks()).toEqual(before);
  });

  it('refuses an empty live set while published indexes exist, unless told otherwise; reports unreferenced indexes', async () => {
    const b = await backupImages(repo, 'b', { d: chunkData(1000) });
    const err = await rejection(repo.collectGarbage({ liveIndexPaths: [], graceMs: HOUR }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    const result = await repo.collectGarbage({ liveIndexPaths: [], graceMs: HOUR, allowEmptyLiveSet: true });
    expect(result.unreferencedIndexPaths).toEqual([b.disks[0].indexPath]);
    expect(result.removedChunks).toBe(0); // fresh
  });

  it('removes stale temp files and abandoned staging directories, keeps fresh ones, and never counts them as chunks', async () => {
    const staleTmp = repo.layout.tempPath('chunk');
    const freshTmp = repo.layout.tempPath('chunk');
    await writeFile(staleTmp, Buffer.alloc(1234));
    await writeFile(freshTmp, Buffer.alloc(10));
    await age(staleTmp, 2 * DAY);
    const staleStage = join(repo.layout.stagingDir, 'x~0011223344556677');
    await mkdir(staleStage);
    await writeFile(join(staleStage, 'd.bhidx'), 'partial');
    await age(staleStage, 2 * DAY);
    const freshStage = join(repo.layout.stagingDir, 'y~8899aabbccddeeff');
    await mkdir(freshStage);
    const stray = join(repo.layout.chunksDir, 'ab', 'not-a-chunk');
    await writeFile(stray, 'x');
    await age(stray, 2 * DAY);

    const result = await repo.collectGarbage({ liveIndexPaths: [], graceMs: DAY });
    expect(result).toMatchObject({
      scannedChunks: 0,
      removedChunks: 0,
      removedTempFiles: 1,
      removedTempBytes: 1234,
      removedStagingDirs: 1,
      unknownEntries: [stray],
    });
    expect(await readdir(repo.layout.tmpDir)).toEqual([freshTmp.split('/').at(-1)]);
    expect(await readdir(repo.layout.stagingDir)).toEqual(['y~8899aabbccddeeff']);
    expect(await readFile(stray, 'utf8')).toBe('x');
  });

  it('puts back chunks a crashed collector left in its trash, on open and on the next run', async () => {
    const img = chunkData(CHUNK_SIZE);
    const live = await backupImages(repo, 'live', { d: img });
    const digest = digestsOf(img).hexAt(0);
    // A collector killed between its rename and its re-check leaves the chunk here.
    await rename(repo.layout.chunkPath(digest), repo.layout.trashPath(digest));
    expect(await repo.missingChunks([digest])).toEqual([digest]);
    const reopened = await Repository.open(repo.root);
    expect(await reopened.missingChunks([digest])).toEqual([]);
    expect(sha256Hex(await restoreImage(reopened, live.disks[0].indexPath))).toBe(sha256Hex(img));

    await rename(repo.layout.chunkPath(digest), repo.layout.trashPath(digest));
    const result = await repo.collectGarbage({ liveIndexPaths: [live.disks[0].indexPath], graceMs: DAY });
    expect(result.restoredFromTrash).toBe(1);
    expect(await repo.hasChunk(digest)).toBe(true);
  });

  it('re-checks a stale-looking chunk after moving it aside: one touched in between goes back', async () => {
    const touched = await putPlain(repo, chunkData(2000));
    const untouched = await putPlain(repo, chunkData(2001));
    for (const d of [touched.digest, untouched.digest]) await age(repo.layout.chunkPath(d), 30 * DAY);
    const cutoff = Date.now() - DAY;
    // The sweep saw both older than the cutoff; then a commit touched one of them.
    expect(await repo.missingChunks([touched.digest])).toEqual([]);
    expect(await removeStaleChunk(repo.layout, touched.digest, cutoff)).toBeUndefined();
    const size = await fileSize(untouched.digest);
    expect(await removeStaleChunk(repo.layout, untouched.digest, cutoff)).toBe(size);
    expect((await repo.readChunk(touched.digest)).equals(touched.plain)).toBe(true);
    expect(await repo.hasChunk(untouched.digest)).toBe(false);
    expect(await readdir(repo.layout.trashDir)).toEqual([]);
    expect(await removeStaleChunk(repo.layout, untouched.digest, cutoff)).toBe(0);
  });

  it('a sweep running while backups ask for chunks keeps every chunk confirmed present and removes the rest', async () => {
    const digests: string[] = [];
    for (let i = 0; i < 600; i++) digests.push((await repo.putChunk(sha256Hex(Buffer.from(`c${i}`)), Buffer.from(`c${i}`), 'none'), sha256Hex(Buffer.from(`c${i}`))));
    for (const d of digests) await age(repo.layout.chunkPath(d), 30 * DAY);
    const now = new Date();
    const confirmed: string[] = [];
    let gcDone = false;
    let sweeping!: () => void;
    const sweepStarted = new Promise<void>((resolve) => (sweeping = resolve));
    const gc = repo
      .collectGarbage({ liveIndexPaths: [], graceMs: DAY, now, onProgress: (p) => p.phase === 'sweep' && sweeping() })
      .finally(() => (gcDone = true));
    // Backups asking about chunks one at a time while the sweep runs, in orders unlike the sweep's.
    const ask = async (order: string[]): Promise<void> => {
      await sweepStarted;
      for (const d of order) {
        if (gcDone) break;
        if ((await repo.missingChunks([d])).length === 0) confirmed.push(d);
        await setImmediate();
      }
    };
    const reversed = [...digests].reverse();
    const askers = [0, 1, 2, 3].map((k) => ask(reversed.filter((_, i) => i % 4 === k)));
    const [result] = await Promise.all([gc, ...askers]);
    expect(confirmed.length).toBeGreaterThan(0);
    expect(result.removedChunks).toBeGreaterThan(0);
    expect(result.removedChunks + result.keptFresh).toBe(600);
    expect(await repo.missingChunks(confirmed)).toEqual([]);
  });

  it('rejects a negative grace and stops with ABORTED when cancelled', async () => {
    expect((await rejection(repo.collectGarbage({ liveIndexPaths: [], graceMs: -1 }))).code).toBe('INVALID_ARGUMENT');
    const ctl = new AbortController();
    ctl.abort();
    expect((await rejection(repo.collectGarbage({ liveIndexPaths: [], graceMs: 0, signal: ctl.signal }))).code).toBe('ABORTED');
  });
});
