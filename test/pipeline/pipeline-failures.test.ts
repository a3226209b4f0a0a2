import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DriverError, type DiskView, type Snapshot } from '../../agent/drivers/driver.js';
import { ChunkWorkerPool, isPipelineError, PipelineError, runBackup, startBackup, type ChunkSink } from '../../agent/pipeline/index.js';
import { CHUNK_SIZE } from '../../hub/repository/index.js';
import { openImages, osThreads, viewWith, workspace, writeImage, type TestImage } from './fixtures.js';
import { RepositorySink } from './repository-sink.js';

const C = CHUNK_SIZE;

let ws: Awaited<ReturnType<typeof workspace>>;
const snapshots: Snapshot[] = [];
let threadsBefore: number;

beforeEach(async () => {
  ws = await workspace();
  threadsBefore = osThreads();
});
afterEach(async () => {
  await Promise.all(snapshots.splice(0).map((s) => s.release()));
  await ws.cleanup();
});

async function image(chunks: number): Promise<TestImage> {
  return writeImage(join(ws.dir, 'vm.img'), Array.from({ length: chunks }, () => 'random' as const));
}

async function viewOf(img: TestImage) {
  const s = await openImages({ sda: img.path });
  snapshots.push(s);
  return s.disks[0];
}

async function failure(p: Promise<unknown>): Promise<PipelineError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof PipelineError) return err;
    throw err;
  }
  throw new Error('expected the backup to fail');
}

/** The run's own worker threads are gone once it has settled (polls briefly: OS threads exit asynchronously). */
async function expectNoWorkerThreadsLeft(): Promise<void> {
  for (let i = 0; i < 50 && osThreads() > threadsBefore; i++) await new Promise((r) => setTimeout(r, 10));
  expect(osThreads()).toBeLessThanOrEqual(threadsBefore);
}

/** A repository sink that logs when each call happens and can be slowed down or made to fail. */
class ScriptedSink implements ChunkSink {
  readonly callTimes: number[] = [];
  uploads = 0;
  constructor(
    private readonly inner: ChunkSink,
    private readonly script: { uploadDelayMs?: number; failUploadNo?: number; failMissing?: boolean; extraMissing?: string } = {},
  ) {}

  async missing(digests: readonly string[], signal: AbortSignal): Promise<string[]> {
    this.callTimes.push(performance.now());
    if (this.script.failMissing) throw new Error('hub unreachable');
    const missing = await this.inner.missing(digests, signal);
    return this.script.extraMissing ? [...missing, this.script.extraMissing] : missing;
  }

  async upload(chunk: Parameters<ChunkSink['upload']>[0], signal: AbortSignal): Promise<void> {
    this.callTimes.push(performance.now());
    const n = ++this.uploads;
    if (this.script.uploadDelayMs) await new Promise((r) => setTimeout(r, this.script.uploadDelayMs));
    if (n === this.script.failUploadNo) throw new Error('connection reset by peer');
    signal.throwIfAborted();
    await this.inner.upload(chunk, signal);
  }
}

describe('cancellation', () => {
  it('stops within a second: no reads or sink calls after, no worker threads left', async () => {
    const img = await image(48);
    const reads: number[] = [];
    const real = await viewOf(img);
    const view = viewWith(real, { read: (o, l) => (reads.push(performance.now()), real.read(o, l)) });
    const sink = new ScriptedSink(new RepositorySink(ws.repo), { uploadDelayMs: 40 });
    const cancel = new AbortController();
    const run = startBackup({ disks: [{ view, parentDigests: null }], sink, signal: cancel.signal });
    while (sink.uploads < 4) await new Promise((r) => setTimeout(r, 5));
    expect(osThreads()).toBeGreaterThan(threadsBefore); // the run's workers are up

    const t0 = performance.now();
    cancel.abort(new Error('operator cancelled the job'));
    const err = await failure(run.result);
    const stoppedMs = performance.now() - t0;

    expect(err.code).toBe('ABORTED');
    expect((err.cause as Error).message).toBe('operator cancelled the job');
    expect(stoppedMs).toBeLessThan(1000);
    expect(reads.length).toBeLessThan(48);
    expect(reads.every((t) => t < t0)).toBe(true);
    const callsAtStop = sink.callTimes.length;
    await new Promise((r) => setTimeout(r, 300));
    expect(sink.callTimes.length).toBe(callsAtStop);
    expect(sink.callTimes.every((t) => t < t0)).toBe(true);
    await expectNoWorkerThreadsLeft();
    expect(run.progress().done).toBe(true);
  });

  it('returns a shared pool\'s threads to it, usable by the next backup', async () => {
    const img = await image(24);
    const pool = new ChunkWorkerPool({ size: 2 });
    try {
      const cancel = new AbortController();
      const sink = new ScriptedSink(new RepositorySink(ws.repo), { uploadDelayMs: 20 });
      const run = startBackup({ disks: [{ view: await viewOf(img), parentDigests: null }], sink, signal: cancel.signal, pool });
      while (sink.uploads < 2) await new Promise((r) => setTimeout(r, 5));
      cancel.abort();
      expect((await failure(run.result)).code).toBe('ABORTED');
      expect(pool.threadCount).toBeLessThanOrEqual(2);

      const again = await runBackup({ disks: [{ view: await viewOf(img), parentDigests: null }], sink: new RepositorySink(ws.repo), pool });
      expect(again.progress.bytesDone).toBe(img.size);
    } finally {
      await pool.close();
    }
    await expectNoWorkerThreadsLeft();
  });

  it('does not start at all when already cancelled', async () => {
    const img = await image(2);
    let reads = 0;
    const real = await viewOf(img);
    const view = viewWith(real, { read: (o, l) => (reads++, real.read(o, l)) });
    const err = await failure(runBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo), signal: AbortSignal.abort() }));
    expect(err.code).toBe('ABORTED');
    expect(reads).toBe(0);
  });
});

describe('errors carry stable codes and are never swallowed', () => {
  it('READ_FAILED when the driver fails a read, naming the disk and range', async () => {
    const img = await image(6);
    const real = await viewOf(img);
    const view = viewWith(real, {
      read: (o, l) => (o === 3 * C ? Promise.reject(new DriverError('READ_FAILED', 'NBD: EIO')) : real.read(o, l)),
    });
    const err = await failure(runBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo), maxReadChunks: 1 }));
    expect(err.code).toBe('READ_FAILED');
    expect(err.details).toEqual({ disk: 'sda', operation: 'read', offset: 3 * C, length: C });
    expect(err.cause).toBeInstanceOf(DriverError);
    await expectNoWorkerThreadsLeft();
  });

  it('READ_FAILED when the driver returns fewer bytes than asked', async () => {
    const img = await image(2);
    const real = await viewOf(img);
    const view = viewWith(real, { read: async (o, l) => (await real.read(o, l)).subarray(0, l - 1) });
    expect((await failure(runBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo) }))).code).toBe('READ_FAILED');
  });

  it('READ_FAILED when listing extents fails', async () => {
    const img = await image(2);
    const view = viewWith(await viewOf(img), {
      allocation: async function* () {
        throw new DriverError('READ_FAILED', 'block status failed');
      },
    });
    const err = await failure(runBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo) }));
    expect(err.code).toBe('READ_FAILED');
    expect(err.details).toEqual({ disk: 'sda', operation: 'allocation' });
  });

  it('SINK_FAILED when an upload fails', async () => {
    const img = await image(6);
    const sink = new ScriptedSink(new RepositorySink(ws.repo), { failUploadNo: 2 });
    const err = await failure(runBackup({ disks: [{ view: await viewOf(img), parentDigests: null }], sink }));
    expect(err.code).toBe('SINK_FAILED');
    expect(err.details).toMatchObject({ operation: 'upload', digest: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect((err.cause as Error).message).toBe('connection reset by peer');
    await expectNoWorkerThreadsLeft();
  });

  it('SINK_FAILED when the dedupe lookup fails', async () => {
    const img = await image(2);
    const sink = new ScriptedSink(new RepositorySink(ws.repo), { failMissing: true });
    const err = await failure(runBackup({ disks: [{ view: await viewOf(img), parentDigests: null }], sink }));
    expect(err.code).toBe('SINK_FAILED');
    expect(err.details).toEqual({ operation: 'missing' });
  });

  it('SINK_PROTOCOL when the sink reports a digest it was not asked about', async () => {
    const img = await image(2);
    const sink = new ScriptedSink(new RepositorySink(ws.repo), { extraMissing: 'f'.repeat(64) });
    const err = await failure(runBackup({ disks: [{ view: await viewOf(img), parentDigests: null }], sink }));
    expect(err.code).toBe('SINK_PROTOCOL');
  });

  it('WORKER_CRASHED when a worker thread dies', async () => {
    const img = await image(4);
    const pool = new ChunkWorkerPool({ size: 2, script: new URL('./crashing-chunk-worker.js', import.meta.url) });
    try {
      const err = await failure(runBackup({ disks: [{ view: await viewOf(img), parentDigests: null }], sink: new RepositorySink(ws.repo), pool }));
      expect(err.code).toBe('WORKER_CRASHED');
      expect(err.message).toMatch(/simulated worker crash in hash/);
    } finally {
      await pool.close();
    }
    await expectNoWorkerThreadsLeft();
  });

  it('INVALID_INPUT for nonsensical limits', () => {
    const view: DiskView = {
      name: 'x',
      sizeBytes: 1,
      fullReadReason: null,
      nextBitmap: null,
      allocation: async function* () {},
      changed: () => null,
      read: () => Promise.reject(new Error('not reached')),
    };
    expect(() => startBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo), maxChunksInFlight: 0 })).toThrow(
      expect.objectContaining({ code: 'INVALID_INPUT', details: { argument: 'maxChunksInFlight' } }),
    );
  });

  it('keeps an independent second failure in `suppressed`', async () => {
    const img = await image(4);
    const real = await viewOf(img);
    // Every read fails, each with its own error: the first is reported, the others kept.
    const view = viewWith(real, {
      read: async (o) => {
        await new Promise((r) => setTimeout(r, 20)); // both reads are under way before the first fails
        throw new DriverError('READ_FAILED', `EIO at ${o}`);
      },
    });
    const err = await failure(runBackup({ disks: [{ view, parentDigests: null }], sink: new RepositorySink(ws.repo), maxReadChunks: 1, readConcurrency: 2 }));
    expect(err.code).toBe('READ_FAILED');
    expect(isPipelineError(err.suppressed[0], 'READ_FAILED')).toBe(true);
  });
});
