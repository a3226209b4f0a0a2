import { stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { dropCaches } from './system.js';

const PIECE = 4 * 1024 * 1024;

export interface ShaLimit {
  bytes: number;
  /** One thread reading and hashing 4 MiB pieces in turn. */
  oneThreadSeconds: number;
  /** `workers` threads, each reading and hashing its own contiguous share of the file. */
  workersSeconds: number;
  workers: number;
}

/**
 * This machine's ceiling for what a backup must do at least once per byte: read the image and
 * SHA-256 it, with Node's crypto (OpenSSL). Each run starts with the page cache dropped, as the
 * backups do; each figure is the best of two runs. Runs in worker threads so this process's
 * event loop is not what is measured.
 */
export async function measureShaLimit(path: string, workers = 2): Promise<ShaLimit> {
  const size = (await stat(path)).size;
  const timed = async (n: number) => {
    dropCaches();
    const share = Math.ceil(size / n / PIECE) * PIECE;
    const t0 = performance.now();
    const done = await Promise.all(
      Array.from({ length: n }, (_, i) => runWorker({ path, start: Math.min(size, i * share), end: Math.min(size, (i + 1) * share), piece: PIECE })),
    );
    const seconds = (performance.now() - t0) / 1000;
    const bytes = done.reduce((a, b) => a + b, 0);
    if (bytes !== size) throw new Error(`hashed ${bytes} of ${size} bytes`);
    return seconds;
  };
  // Best of two: the ceiling, not this virtual disk's bad moments.
  const oneThreadSeconds = Math.min(await timed(1), await timed(1));
  const workersSeconds = Math.min(await timed(workers), await timed(workers));
  return { bytes: size, oneThreadSeconds, workersSeconds, workers };
}

function runWorker(data: { path: string; start: number; end: number; piece: number }): Promise<number> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./sha-worker.js', import.meta.url), { workerData: data });
    w.once('message', (m: { bytes: number }) => resolve(m.bytes));
    w.once('error', reject);
    w.once('exit', (code) => code !== 0 && reject(new Error(`sha worker exited with ${code}`)));
  });
}
