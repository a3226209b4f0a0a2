/**
 * A backup run from tsc's output (the way production runs), for compiled-output.test.ts: proves
 * the worker starts from its compiled .js. Prints one JSON line; exits non-zero on failure.
 */
import { join } from 'node:path';
import { ChunkWorkerPool, runBackup } from '../../agent/pipeline/index.js';
import { openImages, restoredSha256, workspace, writeImage } from './fixtures.js';
import { RepositorySink } from './repository-sink.js';

const ws = await workspace();
try {
  const img = await writeImage(join(ws.dir, 'smoke.img'), ['random', 'zero', 'random', { copyOf: 0 }, 'random'], 4096);
  const pool = new ChunkWorkerPool({ size: 2 });
  const snap = await openImages({ sda: img.path });
  try {
    const res = await runBackup({ disks: [{ view: snap.disks[0], parentDigests: null }], sink: new RepositorySink(ws.repo), pool });
    const restored = await restoredSha256(ws.repo, res.disks[0].digests, img.size);
    console.log(JSON.stringify({ mode: pool.mode, imageSha256: img.sha256, restoredSha256: restored, progress: res.progress }));
  } finally {
    await snap.release();
    await pool.close();
  }
} finally {
  await ws.cleanup();
}
