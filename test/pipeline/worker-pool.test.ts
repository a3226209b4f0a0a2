import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkWorkerPool, isPipelineError } from '../../agent/pipeline/index.js';
import { zstdDecompress } from '../../shared/chunk/zstd.js';

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

/** A standalone ArrayBuffer holding `bytes`. */
function arrayBufferOf(bytes: Uint8Array): ArrayBuffer {
  const ab = new ArrayBuffer(bytes.length);
  new Uint8Array(ab).set(bytes);
  return ab;
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

  it('hashes chunks, reports all-zero ones as null, and moves the buffer instead of copying it', async () => {
    const a = randomBytes(4096);
    const zero = Buffer.alloc(100_000);
    const almostZero = Buffer.alloc(100_000);
    almostZero[99_999] = 1; // the very last byte, past the last full 64 KiB comparison block
    const ab = arrayBufferOf(Buffer.concat([a, zero, almostZero]));
    const chunks = [
      { offset: 0, length: a.length },
      { offset: a.length, length: zero.length },
      { offset: a.length + zero.length, length: almostZero.length },
    ];
    const p = pool({ size: 2 });

    const out = await p.hash(ab, chunks);

    expect(ab.byteLength).toBe(0); // detached here: it was transferred
    expect(out.reply.digests).toEqual([createHash('sha256').update(a).digest('hex'), null, createHash('sha256').update(almostZero).digest('hex')]);
    expect(out.reply.buffer.byteLength).toBe(a.length + 2 * 100_000); // and transferred back
    expect(out.busyMs).toBeGreaterThan(0);
  });

  it('compresses each chunk into one zstd frame in a buffer of exactly its size', async () => {
    const text = Buffer.from('backhaul '.repeat(100_000));
    const rand = randomBytes(50_000);
    const ab = arrayBufferOf(Buffer.concat([text, rand]));

    const out = await pool({ size: 1 }).compress(ab, [{ offset: 0, length: text.length }, { offset: text.length, length: rand.length }], 3);

    const [f1, f2] = out.reply.frames;
    expect(f1.byteLength).toBeLessThan(text.length / 50);
    expect(zstdDecompress(new Uint8Array(f1), text.length).equals(text)).toBe(true);
    expect(zstdDecompress(new Uint8Array(f2), rand.length).equals(rand)).toBe(true);
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
    const big = arrayBufferOf(randomBytes(64 * 1024 * 1024));
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
    const running = [0, 1, 2].map(() => rejection(p.hash(arrayBufferOf(randomBytes(16 << 20)), [{ offset: 0, length: 16 << 20 }])));
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

  it('refuses a script that exists neither compiled nor as source, with WORKER_UNAVAILABLE', () => {
    expect(() => new ChunkWorkerPool({ script: new URL('./no-such-worker.js', import.meta.url) })).toThrow(expect.objectContaining({ code: 'WORKER_UNAVAILABLE' }));
  });
});
