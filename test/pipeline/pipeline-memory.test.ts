import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ChunkWorkerPool, runBackup, type ChunkSink, type PipelineProgress } from '../../agent/pipeline/index.js';
import { CHUNK_SIZE } from '../../hub/repository/index.js';
import { MiB, openImages, peakRss, resetPeakRss, restoredSha256, workspace, writeImage } from './fixtures.js';
import { RepositorySink } from './repository-sink.js';

let ws: Awaited<ReturnType<typeof workspace>>;
beforeEach(async () => {
  ws = await workspace();
});
afterEach(async () => {
  await ws.cleanup();
});

it('keeps peak RSS bounded on a 1 GiB disk (512 MiB random, 512 MiB holes), whatever its size', async () => {
  // 256 chunks: even ones random, odd ones holes.
  const img = await writeImage(join(ws.dir, 'big.img'), Array.from({ length: 256 }, (_, i) => (i % 2 === 0 ? 'random' : 'zero')));
  expect(img.size).toBe(1024 * MiB);
  // Load what a long-running agent has loaded already (modules; from sources, also TypeScript).
  await new ChunkWorkerPool({ size: 1 }).close();

  const repoSink = new RepositorySink(ws.repo);
  let outstanding = 0;
  let maxOutstanding = 0;
  const sink: ChunkSink = {
    missing: (d, s) => repoSink.missing(d, s),
    upload: async (c, s) => {
      maxOutstanding = Math.max(maxOutstanding, ++outstanding);
      try {
        await repoSink.upload(c, s);
      } finally {
        outstanding--;
      }
    },
    hubBusyMs: () => repoSink.hubBusyMs(),
  };
  const reports: PipelineProgress[] = [];
  const snap = await openImages({ sda: img.path });
  await resetPeakRss();
  const base = process.memoryUsage().rss;
  let res;
  try {
    res = await runBackup({ disks: [{ view: snap.disks[0], parentDigests: null }], sink, onProgress: (p) => reports.push(p) });
  } finally {
    await snap.release();
  }
  const delta = peakRss() - base;
  console.log(`peak RSS ${((base + delta) / MiB).toFixed(0)} MiB, +${(delta / MiB).toFixed(0)} MiB over ${(base / MiB).toFixed(0)} MiB; ${res.progress.elapsedMs.toFixed(0)} ms`);

  expect(res.progress.chunksTransferred).toBe(128);
  expect(res.progress.chunksZero).toBe(128);
  expect(maxOutstanding).toBeLessThanOrEqual(8); // the default in-flight bound
  expect(delta).toBeLessThan(200 * MiB);
  // Default throttle: at most one report a second, plus the final one.
  expect(reports.length).toBeLessThanOrEqual(Math.floor(res.progress.elapsedMs / 1000) + 1);
  expect(reports.at(-1)!.done).toBe(true);
  expect(await restoredSha256(ws.repo, res.disks[0].digests, img.size)).toBe(img.sha256);
  expect(CHUNK_SIZE).toBe(4 * MiB);
});
