import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Extent, Snapshot } from '../../agent/drivers/driver.js';
import { ChunkWorkerPool, runBackup, startBackup, type ChunkSink, type PipelineProgress } from '../../agent/pipeline/index.js';
import { CHUNK_SIZE } from '../../hub/repository/index.js';
import {
  fileSha256,
  MiB,
  openImages,
  restoredSha256,
  scribble,
  storedChunks,
  viewWith,
  workspace,
  writeImage,
  type TestImage,
} from './fixtures.js';
import { RepositorySink } from './repository-sink.js';

const C = CHUNK_SIZE;

let ws: Awaited<ReturnType<typeof workspace>>;
const snapshots: Snapshot[] = [];

beforeEach(async () => {
  ws = await workspace();
});
afterEach(async () => {
  await Promise.all(snapshots.splice(0).map((s) => s.release()));
  await ws.cleanup();
});

async function open(disks: Record<string, string>): Promise<Snapshot> {
  const s = await openImages(disks);
  snapshots.push(s);
  return s;
}

/** sda: random, zero, random, a copy of chunk 0, zero, random, and a short random tail. sdb repeats sda's chunk 0. */
async function twoImages(): Promise<{ sda: TestImage; sdb: TestImage; distinct: Set<string> }> {
  const sda = await writeImage(join(ws.dir, 'sda.img'), ['random', 'zero', 'random', { copyOf: 0 }, 'zero', 'random', 'random'], MiB + 123);
  const first = (await readFile(sda.path)).subarray(0, C);
  const sdb = await writeImage(join(ws.dir, 'sdb.img'), [{ data: first }, 'random']);
  const distinct = new Set([...sda.chunkDigests, ...sdb.chunkDigests].filter((d): d is string => d !== null));
  return { sda, sdb, distinct };
}

describe('full backup into the hub repository', () => {
  it.each([
    { maxReadChunks: 1, maxChunksInFlight: 2 },
    { maxReadChunks: 3, maxChunksInFlight: 8 },
  ])('stores exactly the distinct non-zero chunks and restores bit-exactly (%o)', async (limits) => {
    const { sda, sdb, distinct } = await twoImages();
    const snap = await open({ sda: sda.path, sdb: sdb.path });
    const sink = new RepositorySink(ws.repo);

    const res = await runBackup({ disks: snap.disks.map((view) => ({ view, parentDigests: null })), sink, ...limits });

    expect(distinct.size).toBe(5); // sda: 0, 2, 5, 6 (chunk 3 = chunk 0); sdb: chunk 1 (chunk 0 = sda's 0)
    expect(await storedChunks(ws.repo)).toEqual(distinct);
    expect(sink.calls.uploads).toBe(5);
    const [a, b] = res.disks;
    expect(a.digests.toHex()).toEqual(sda.chunkDigests.map((d) => d ?? '0'.repeat(64)));
    expect(b.digests.toHex()).toEqual(sdb.chunkDigests);
    expect(await restoredSha256(ws.repo, a.digests, sda.size)).toBe(sda.sha256);
    expect(await restoredSha256(ws.repo, b.digests, sdb.size)).toBe(sdb.sha256);

    expect(a.counters).toMatchObject({
      bytesTotal: sda.size,
      bytesRead: sda.size,
      chunksTotal: 7,
      chunksZero: 2,
      chunksDeduplicated: 1,
      chunksTransferred: 4,
      bytesTransferred: 3 * C + MiB + 123,
    });
    // sdb's first chunk is sda's first; whether the hub had it already or it was still in flight, it is not sent twice.
    expect(b.counters).toMatchObject({ chunksDeduplicated: 1, chunksTransferred: 1, bytesTransferred: C });
    expect(res.progress.bytesSent).toBeGreaterThan(0);

    // The digest lists are what the repository's commit takes: stage, publish, restore from the index.
    const staged = await ws.repo.stageBackup({
      backupId: 'b1',
      createdAt: new Date(),
      disks: res.disks.map((d) => ({ diskId: d.name, diskSize: d.sizeBytes, digests: d.digests })),
    });
    await ws.repo.publishBackup(staged);
    const index = await ws.repo.readIndex(ws.repo.indexPath('b1', 'sda'));
    expect(await restoredSha256(ws.repo, index.digests, index.diskSize)).toBe(sda.sha256);
  });

  it('a second run of the same images uploads nothing, but reads everything', async () => {
    const { sda, sdb, distinct } = await twoImages();
    const first = await runBackup({ disks: (await open({ sda: sda.path, sdb: sdb.path })).disks.map((view) => ({ view, parentDigests: null })), sink: new RepositorySink(ws.repo) });

    const sink = new RepositorySink(ws.repo);
    const second = await runBackup({ disks: (await open({ sda: sda.path, sdb: sdb.path })).disks.map((view) => ({ view, parentDigests: null })), sink });

    expect(sink.calls.uploads).toBe(0);
    expect(sink.calls.missing).toBeGreaterThan(0);
    expect(await storedChunks(ws.repo)).toEqual(distinct);
    expect(second.disks.map((d) => d.digests.toHex())).toEqual(first.disks.map((d) => d.digests.toHex()));
    const p = second.progress;
    expect(p.bytesRead).toBe(sda.size + sdb.size);
    expect(p.bytesTransferred).toBe(0);
    expect(p.bytesSent).toBe(0);
    expect(p.chunksDeduplicated).toBe(7); // every non-zero chunk: 5 of sda, 2 of sdb
    expect(p.bytesZero + p.bytesDeduplicated).toBe(p.bytesTotal);
  });
});

describe('incremental backup', () => {
  it('reads only the changed chunks and reuses the parent digests of the rest', async () => {
    const img = await writeImage(join(ws.dir, 'vm.img'), ['random', 'random', 'random', 'zero', 'random', 'random', 'random', 'random']);
    const parent = await runBackup({ disks: [{ view: (await open({ vda: img.path })).disks[0], parentDigests: null }], sink: new RepositorySink(ws.repo) });
    const parentDigests = parent.disks[0].digests;

    await scribble(img.path, 2 * C + 100, 10);
    await scribble(img.path, 6 * C, C);
    const changed: Extent[] = [
      { offset: 2 * C + 100, length: 10 },
      { offset: 6 * C, length: C },
    ];
    // Test double of the driver: the file driver has no change tracking and reports no holes, so
    // this view reports what a QEMU dirty bitmap and base:allocation would, and records its reads.
    const reads: Extent[] = [];
    const real = (await open({ vda: img.path })).disks[0];
    const view = viewWith(real, {
      allocation: async function* () {
        yield { offset: 0, length: 3 * C, zero: false };
        yield { offset: 3 * C, length: C, zero: true };
        yield { offset: 4 * C, length: 4 * C, zero: false };
      },
      changed: () =>
        (async function* () {
          yield* changed;
        })(),
      read: (offset, length) => {
        reads.push({ offset, length });
        return real.read(offset, length);
      },
    });
    const sink = new RepositorySink(ws.repo);

    const res = await runBackup({ disks: [{ view, parentDigests }], sink, maxReadChunks: 4 });

    const chunksRead = reads.flatMap((r) => Array.from({ length: r.length / C }, (_, k) => r.offset / C + k));
    expect(chunksRead.sort()).toEqual([2, 6]);
    const digests = res.disks[0].digests;
    for (const i of [0, 1, 3, 4, 5, 7]) expect(digests.hexAt(i), `chunk ${i}`).toBe(parentDigests.hexAt(i));
    for (const i of [2, 6]) expect(digests.hexAt(i), `chunk ${i}`).not.toBe(parentDigests.hexAt(i));
    expect(res.disks[0].counters).toMatchObject({ bytesRead: 2 * C, chunksReusedParent: 5, chunksZero: 1, chunksTransferred: 2 });
    expect(sink.calls.uploads).toBe(2);
    expect(await restoredSha256(ws.repo, digests, img.size)).toBe(await fileSha256(img.path));
  });
});

/** Wraps a sink to make each call slower: the pipeline must wait for it, not pile up chunks. */
function slowSink(inner: ChunkSink, delayMs: { missing?: number; upload?: number }): ChunkSink {
  const sleep = (ms = 0) => new Promise((r) => setTimeout(r, ms));
  return {
    missing: async (d, s) => (await sleep(delayMs.missing), inner.missing(d, s)),
    upload: async (c, s) => (await sleep(delayMs.upload), inner.upload(c, s)),
    hubBusyMs: inner.hubBusyMs ? () => inner.hubBusyMs!() : undefined,
  };
}

const COUNTERS: (keyof PipelineProgress)[] = [
  'bytesTotal', 'bytesToRead', 'bytesRead', 'bytesZero', 'bytesReusedParent', 'bytesDeduplicated', 'bytesTransferred', 'bytesSent',
  'bytesReused', 'bytesDone', 'chunksRead', 'chunksZero', 'chunksReusedParent', 'chunksDeduplicated', 'chunksTransferred', 'elapsedMs',
];

describe('progress', () => {
  // Started and warmed up front, so thread start-up (≈0.3 s from .ts sources) is not in the busy fractions.
  let pool: ChunkWorkerPool;
  beforeAll(async () => {
    pool = new ChunkWorkerPool({ size: 2 });
    await Promise.all([0, 1].map(() => pool.hash(new ArrayBuffer(8), [{ offset: 0, length: 8 }])));
  });
  afterAll(() => pool.close());

  async function imageOf(chunks: number): Promise<TestImage> {
    return writeImage(join(ws.dir, 'p.img'), Array.from({ length: chunks }, (_, i) => (i % 4 === 3 ? 'zero' : i % 7 === 6 ? { copyOf: 0 } : 'random')));
  }

  it('is monotonic, throttled, and ends with the totals accounted for; a slow sink is named the bottleneck', async () => {
    const img = await imageOf(24);
    const reports: PipelineProgress[] = [];
    const run = startBackup({
      disks: [{ view: (await open({ sda: img.path })).disks[0], parentDigests: null }],
      sink: slowSink(new RepositorySink(ws.repo), { upload: 100 }),
      onProgress: (p) => reports.push(p),
      progressIntervalMs: 100,
      maxChunksInFlight: 4,
      pool,
    });
    await new Promise((r) => setTimeout(r, 300));
    const onDemand = run.progress();
    const res = await run.result;

    expect(reports.length).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < reports.length; i++) {
      for (const k of COUNTERS) expect(reports[i][k] as number, `${k} at report ${i}`).toBeGreaterThanOrEqual(reports[i - 1][k] as number);
      // At most one report per interval (the final one aside), give or take timer jitter.
      if (i < reports.length - 1) expect(reports[i].elapsedMs - reports[i - 1].elapsedMs).toBeGreaterThan(90);
    }
    for (const k of COUNTERS) if (k !== 'elapsedMs') expect(onDemand[k] as number, k).toBeLessThanOrEqual(res.progress[k] as number);

    const last = reports.at(-1)!;
    expect(last.done).toBe(true);
    expect(reports.slice(0, -1).every((r) => !r.done)).toBe(true);
    const p = res.progress;
    expect(p.bytesTotal).toBe(img.size);
    expect(p.bytesRead).toBe(img.size); // full backup, the file driver reports no holes: every chunk is read
    expect(p.bytesToRead).toBe(img.size);
    expect(p.bytesZero + p.bytesReused + p.bytesTransferred).toBe(p.bytesTotal);
    expect(p.bytesDone).toBe(p.bytesTotal);
    expect(p.chunksZero + p.chunksReusedParent + p.chunksDeduplicated + p.chunksTransferred).toBe(p.chunksTotal);
    expect(p.chunksZero).toBe(6);
    expect(p.chunksDeduplicated).toBe(3); // chunks 6, 13, 20 repeat chunk 0

    const mid = reports.find((r) => !r.done && r.bytesDone > 0 && r.bytesDone < r.bytesTotal);
    expect(mid, 'a report in the middle of the run').toBeDefined();
    expect(mid!.rateBytesPerSecond).toBeGreaterThan(0);
    expect(mid!.etaSeconds).toBeGreaterThan(0);
    expect(p.etaSeconds).toBe(0);

    // Uploads take 100 ms each, the rest a few ms: the network stage is the one that was busy.
    const busy = p.busyOverall;
    for (const v of [busy.sourceRead, busy.hashCompress, busy.network, busy.hubWrite!]) expect(v).toBeGreaterThanOrEqual(0);
    for (const v of [busy.sourceRead, busy.hashCompress, busy.network, busy.hubWrite!]) expect(v).toBeLessThanOrEqual(1);
    expect(busy.network).toBeGreaterThan(0.7);
    expect(busy.network).toBeGreaterThan(2 * Math.max(busy.sourceRead, busy.hashCompress));
    // The hub's own time is part of each sink call here (in-process), so it is below the network's.
    expect(busy.hubWrite!).toBeLessThan(busy.network);
  });

  it('names a slow source as the bottleneck', async () => {
    const img = await imageOf(12);
    const real = (await open({ sda: img.path })).disks[0];
    const view = viewWith(real, { read: async (o, l) => (await new Promise((r) => setTimeout(r, 150)), real.read(o, l)) });
    const res = await runBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo), readConcurrency: 1, maxReadChunks: 1, pool });
    const busy = res.progress.busyOverall;
    expect(busy.sourceRead).toBeGreaterThan(0.7);
    expect(busy.sourceRead).toBeGreaterThan(2 * Math.max(busy.network, busy.hashCompress));
  });
});
