import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkWorkerPool, isPipelineError } from '../../agent/pipeline/index.js';
import { zstdCompressBound, zstdDecompress } from '../../shared/chunk/zstd.js';

const pools: ChunkWorkerPool[] = [];
function pool(opts: ConstructorParameters<typeof ChunkWorkerPool>[0] = {}): ChunkWorkerPool {
  const p = new ChunkWorkerPool(opts);
  pools.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

const crashing = new URL('./crashing-chunk-worker.js', import.meta.url);

/** A SharedArrayBuffer holding `bytes`, as the pipeline hands its reads to the workers. */
function sharedOf(bytes: Uint8Array): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(bytes.length);
  new Uint8Array(sab).set(bytes);
  return sab;
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    if (err instanceof Error) return err;
    throw new Error(`rejected with a non-Error: ${String(err)}`);
  }
  throw new Error('expected a rejection');
}

describe('ChunkWorkerPool', () => {
  it('runs the worker from the .ts source under vitest', () => {
    expect(pool({ size: 1 }).mode).toBe('source');
  });

  it('hashes chunks in a shared buffer in place, and reports all-zero ones as null', async () => {
    const a = randomBytes(4096);
    const zero = Buffer.alloc(100_000);
    const almostZero = Buffer.alloc(100_000);
    almostZero[99_999] = 1; // the very last byte, past the last full 64 KiB comparison block
    const sab = sharedOf(Buffer.concat([a, zero, almostZero]));
    const chunks = [
      { offset: 0, length: a.length },
      { offset: a.length, length: zero.length },
      { offset: a.length + zero.length, length: almostZero.length },
    ];
    const p = pool({ size: 2 });

    const out = await p.hash(sab, chunks);

    expect(sab.byteLength).toBe(a.length + 2 * 100_000); // shared, never detached
    expect(out.reply.digests).toEqual([createHash('sha256').update(a).digest('hex'), null, createHash('sha256').update(almostZero).digest('hex')]);
    expect(out.busyMs).toBeGreaterThan(0);
  });

  it('compresses each chunk into one zstd frame at the start of its range of the shared output', async () => {
    const text = Buffer.from('backhaul '.repeat(100_000));
    const rand = randomBytes(50_000);
    const sab = sharedOf(Buffer.concat([text, rand]));
    const out = new SharedArrayBuffer(2 << 20);
    const ranges = [
      { offset: 100, length: zstdCompressBound(text.length) },
      { offset: 100 + zstdCompressBound(text.length) + 7, length: zstdCompressBound(rand.length) },
    ];

    const res = await pool({ size: 1 }).compress(sab, [{ offset: 0, length: text.length }, { offset: text.length, length: rand.length }], 3, out, ranges);

    const [n1, n2] = res.reply.lengths;
    expect(n1).toBeLessThan(text.length / 50);
    const frame = (k: number, n: number) => new Uint8Array(out, ranges[k]!.offset, n);
    expect(zstdDecompress(frame(0, n1!), text.length).equals(text)).toBe(true);
    expect(zstdDecompress(frame(1, n2!), rand.length).equals(rand)).toBe(true);
    // A range too small for zstd's worst case is refused, not overrun.
    const small = await rejection(pool({ size: 1 }).compress(sab, [{ offset: 0, length: text.length }], 3, out, [{ offset: 0, length: 1000 }]));
    expect(isPipelineError(small, 'WORKER_TASK_FAILED')).toBe(true);
    expect(small.message).toContain('cannot hold a frame');
  });

  it('fails the task of a crashed thread with WORKER_CRASHED and starts a fresh thread for the next one', async () => {
    const p = pool({ size: 1, script: crashing });

    const e1 = await rejection(p.hash(new ArrayBuffer(8), [{ offset: 0, length: 8 }]));
    const e2 = await rejection(p.hash(new ArrayBuffer(8), [{ offset: 0, length: 1 }]));

    expect(isPipelineError(e1, 'WORKER_CRASHED') && e1.message).toMatch(/simulated worker crash in hash/);
    expect(isPipelineError(e2, 'WORKER_CRASHED') && e2.details.exitCode).toBe(7);
    if (!isPipelineError(e1, 'WORKER_CRASHED') || !isPipelineError(e2, 'WORKER_CRASHED')) throw new Error('unreachable');
    expect(e2.details.threadId).not.toBe(e1.details.threadId);
    expect(p.threadCount).toBe(0);
  });

  it('rejects a cancelled task at once, and the thread computing another finishes it', async () => {
    const p = pool({ size: 1 });
    const big = sharedOf(randomBytes(64 * 1024 * 1024));
    const busy = p.hash(big, [{ offset: 0, length: big.byteLength }]);
    const cancel = new AbortController();
    const queued = p.hash(new ArrayBuffer(8), [{ offset: 0, length: 8 }], cancel.signal);

    cancel.abort(new Error('changed my mind'));
    const err = await rejection(queued);

    expect(isPipelineError(err, 'ABORTED')).toBe(true);
    expect((await busy).reply.digests[0]).toMatch(/^[0-9a-f]{64}$/);
  });

  it('close() terminates every thread and rejects the tasks still waiting', async () => {
    const p = pool({ size: 2 });
    const running = [0, 1, 2].map(() => rejection(p.hash(sharedOf(randomBytes(16 << 20)), [{ offset: 0, length: 16 << 20 }])));
    await new Promise((r) => setTimeout(r, 20));
    expect(p.threadCount).toBe(2);

    await p.close();

    for (const r of running) expect(isPipelineError(await r, 'ABORTED')).toBe(true);
    expect(p.threadCount).toBe(0);
    expect(isPipelineError(await rejection(p.hash(new ArrayBuffer(1), [{ offset: 0, length: 1 }])), 'ABORTED')).toBe(true);
  });

  it('lets idle threads exit', async () => {
    const p = pool({ size: 2, idleTimeoutMs: 300 });
    await Promise.all([0, 1].map(() => p.hash(new ArrayBuffer(8), [{ offset: 0, length: 8 }])));
    // On a loaded machine one thread may have served both tasks, so at least one is running.
    expect(p.threadCount).toBeGreaterThan(0);
    await expect.poll(() => p.threadCount, { timeout: 5_000, interval: 50 }).toBe(0);
    // And starts new ones on demand.
    expect((await p.hash(new ArrayBuffer(8), [{ offset: 0, length: 8 }])).reply.digests).toEqual([null]);
  });

  it('warm() starts every thread before any task, and they still exit when left idle', async () => {
    const p = pool({ size: 2, idleTimeoutMs: 400 });
    p.warm();
    expect(p.threadCount).toBe(2);
    p.warm(); // already warm: no more threads than the pool's size
    expect(p.threadCount).toBe(2);
    expect((await p.hash(new ArrayBuffer(8), [{ offset: 0, length: 8 }])).reply.digests).toEqual([null]);
    await expect.poll(() => p.threadCount, { timeout: 5_000, interval: 50 }).toBe(0);
  });

  it('refuses a script that exists neither compiled nor as source, with WORKER_UNAVAILABLE', () => {
    expect(() => new ChunkWorkerPool({ script: new URL('./no-such-worker.js', import.meta.url) })).toThrow(expect.objectContaining({ code: 'WORKER_UNAVAILABLE' }));
  });
});
