import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChunkStoreWorkers, CHUNK_SIZE, Repository, RepositoryError, zstdCompress } from '../../hub/repository/index.js';
import { isWorkerPoolError } from '../../shared/workers/worker-pool-error.js';
import { chunkData, rejection, sha256Hex } from './fixtures.js';

/** Two repositories side by side: one stores on the caller's thread, one through worker threads. */
let dir: string;
let inProcess: Repository;
let viaWorkers: Repository;
let workers: ChunkStoreWorkers;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backhaul-workers-'));
  workers = new ChunkStoreWorkers({ size: 2 });
  inProcess = await Repository.create(join(dir, 'a'));
  viaWorkers = await Repository.create(join(dir, 'b'), { workers });
});
afterEach(async () => {
  await workers.close();
  await rm(dir, { recursive: true, force: true });
});

async function chunkFile(repo: Repository, digest: string): Promise<Buffer> {
  return readFile(repo.layout.chunkPath(digest));
}

/** Every file under chunks/ and tmp/ of a repository. */
async function filesOf(repo: Repository): Promise<{ chunks: string[]; tmp: string[] }> {
  const chunks: string[] = [];
  for (const d of await readdir(repo.layout.chunksDir)) chunks.push(...(await readdir(join(repo.layout.chunksDir, d))));
  return { chunks, tmp: await readdir(repo.layout.tmpDir) };
}

/** `payload` in an ArrayBuffer of its own, after 90 bytes of other fields: how grpc-js hands over an UploadChunksRequest. */
function asReceivedMessage(payload: Uint8Array): { message: ArrayBuffer; data: Buffer } {
  const message = new ArrayBuffer(90 + payload.length);
  const data = Buffer.from(message, 90, payload.length);
  data.set(payload);
  return { message, data };
}

describe('ChunkStoreWorkers', () => {
  it('stores chunks byte for byte as the in-process path does, with the same results', async () => {
    const full = chunkData(CHUNK_SIZE);
    const short = chunkData(1_000_003);
    const raw = randomBytes(65_536);
    const uploads: [string, Buffer, 'zstd' | 'none', Buffer][] = [
      [sha256Hex(full), zstdCompress(full), 'zstd', full],
      [sha256Hex(short), zstdCompress(short), 'zstd', short],
      [sha256Hex(raw), raw, 'none', raw],
    ];
    for (const [digest, payload, encoding, plain] of uploads) {
      const a = await inProcess.putChunk(digest, payload, encoding);
      const b = await viaWorkers.putChunk(digest, payload, encoding);
      expect(b).toEqual(a);
      expect(b.created).toBe(true);
      expect((await chunkFile(viaWorkers, digest)).equals(await chunkFile(inProcess, digest))).toBe(true);
      expect((await viaWorkers.readChunk(digest)).equals(plain)).toBe(true);
    }
    expect((await filesOf(viaWorkers)).tmp).toEqual([]);
    // A chunk the store has is only touched: no worker, no look at the bytes.
    expect(await viaWorkers.putChunk(uploads[0]![0], Buffer.from('not even zstd'), 'zstd')).toEqual({ created: false });
  });

  it('refuses wrong content with the same DATA_LOSS as the in-process path, and leaves no chunk and no temp file', async () => {
    const plain = chunkData(CHUNK_SIZE);
    const claimed = sha256Hex(chunkData(CHUNK_SIZE));
    const cases: [string, Buffer, 'zstd' | 'none'][] = [
      [claimed, zstdCompress(plain), 'zstd'], // digest-mismatch
      [claimed, plain, 'none'], // digest-mismatch, uncompressed
      [claimed, randomBytes(5000), 'zstd'], // undecodable, with libzstd's error as the cause
      [claimed, zstdCompress(Buffer.alloc(CHUNK_SIZE + 1, 7)), 'zstd'], // bad-length
    ];
    for (const [digest, payload, encoding] of cases) {
      const expected = await rejection(inProcess.putChunk(digest, payload, encoding));
      const { data } = asReceivedMessage(payload);
      const err = await rejection(viaWorkers.putChunk(digest, data, encoding, { transferPayload: true }));
      expect(err).toBeInstanceOf(RepositoryError);
      expect(expected).toBeInstanceOf(RepositoryError);
      expect({ code: err.code, message: err.message, details: err.details }).toEqual({ code: expected.code, message: expected.message, details: expected.details });
      if (expected.cause instanceof Error) expect((err.cause as Error).message).toBe(expected.cause.message);
    }
    expect(await filesOf(viaWorkers)).toEqual({ chunks: [], tmp: [] });
    expect(await viaWorkers.missingChunks([claimed])).toEqual([claimed]);
  });

  it('moves a received message to the worker instead of copying it, and copies what it may not move', async () => {
    const plain = randomBytes(CHUNK_SIZE); // incompressible: the frame is as large as the chunk
    const digest = sha256Hex(plain);
    const frame = Buffer.from(zstdCompress(plain)); // a copy in an ArrayBuffer of its own
    const { message, data } = asReceivedMessage(frame);

    expect(await viaWorkers.putChunk(digest, data, 'zstd', { transferPayload: true })).toMatchObject({ created: true });
    expect(message.byteLength).toBe(0); // detached: moved, not copied

    // Without transferPayload the caller keeps its buffer.
    const plain2 = randomBytes(CHUNK_SIZE);
    const kept = asReceivedMessage(Buffer.from(zstdCompress(plain2)));
    await viaWorkers.putChunk(sha256Hex(plain2), kept.data, 'zstd');
    expect(kept.message.byteLength).toBeGreaterThan(CHUNK_SIZE);

    // A small payload lives in Node's shared pool, and a view into a larger buffer shares it: both are copied.
    const small = Buffer.from(zstdCompress(Buffer.alloc(CHUNK_SIZE, 3)));
    expect(small.buffer.byteLength).toBe(Buffer.poolSize);
    await viaWorkers.putChunk(sha256Hex(Buffer.alloc(CHUNK_SIZE, 3)), small, 'zstd', { transferPayload: true });
    expect(small.buffer.byteLength).toBe(Buffer.poolSize);
    const plain3 = chunkData(CHUNK_SIZE);
    const view = zstdCompress(plain3); // a view of the compress bound, which is larger than the frame by far
    await viaWorkers.putChunk(sha256Hex(plain3), view, 'zstd', { transferPayload: true });
    expect(view.buffer.byteLength).toBeGreaterThan(view.length);

    for (const p of [plain, plain2, Buffer.alloc(CHUNK_SIZE, 3), plain3]) expect((await viaWorkers.readChunk(sha256Hex(p))).equals(p)).toBe(true);
  });

  it('fails only the chunk whose thread dies, with WORKER_CRASHED, and stores the next one on a fresh thread', async () => {
    const crashing = new ChunkStoreWorkers({ size: 1, script: new URL('./crashing-chunk-store-worker.js', import.meta.url) });
    try {
      const repo = await Repository.open(join(dir, 'b'), { workers: crashing });
      const doomed = 'dead' + sha256Hex(randomBytes(8)).slice(4);
      const err = await rejection(repo.putChunk(doomed, zstdCompress(chunkData(1000))));
      expect(isWorkerPoolError(err, 'WORKER_CRASHED') && err.details.exitCode).toBe(9);
      expect(err.message).toMatch(/worker thread \d+ exited with code 9 while running a task/);
      const plain = chunkData(CHUNK_SIZE);
      expect(await repo.putChunk(sha256Hex(plain), zstdCompress(plain))).toMatchObject({ created: true, plaintextBytes: CHUNK_SIZE });
      expect((await filesOf(repo)).chunks).toEqual([sha256Hex(plain)]);
    } finally {
      await crashing.close();
    }
  });

  it('reads chunks on the threads, with the same plaintext and the same refusals as the in-process path', async () => {
    const full = randomBytes(CHUNK_SIZE);
    const short = chunkData(1_000_003);
    const raw = randomBytes(65_536);
    const stored: [string, Buffer][] = [];
    for (const [plain, encoding] of [[full, 'zstd'], [short, 'zstd'], [raw, 'none']] as const) {
      const digest = sha256Hex(plain);
      const payload = encoding === 'zstd' ? zstdCompress(plain) : plain;
      await inProcess.putChunk(digest, payload, encoding);
      await viaWorkers.putChunk(digest, payload, encoding);
      stored.push([digest, plain]);
    }
    let previous: ArrayBuffer | null = null;
    for (const [digest, plain] of stored) {
      const decoded = await viaWorkers.readDecoded(digest);
      expect(decoded.plaintext.equals(plain)).toBe(true);
      decoded.release();
      const c = await viaWorkers.readVerified(digest);
      expect(c.plaintext.equals(plain)).toBe(true);
      expect(c.plaintext.byteOffset).toBe(c.headroom);
      c.release();
      // The buffer went to a thread and came back: the one given back before it is now detached.
      if (previous) expect(previous.byteLength).toBe(0);
      previous = c.plaintext.buffer as ArrayBuffer;
    }
    // The same file damaged in both repositories, and a chunk neither has.
    const [victim] = stored[0]!;
    for (const repo of [inProcess, viaWorkers]) {
      const file = await chunkFile(repo, victim);
      file[file.length - 100]! ^= 0x01;
      await writeFile(repo.layout.chunkPath(victim), file);
    }
    for (const digest of [victim, 'ab'.repeat(32)]) {
      const expected = await rejection(inProcess.readVerified(digest));
      const err = await rejection(viaWorkers.readVerified(digest));
      expect(err).toBeInstanceOf(RepositoryError);
      expect({ code: err.code, message: err.message, details: err.details }).toEqual({ code: expected.code, message: expected.message, details: expected.details });
    }
    expect((await rejection(viaWorkers.readVerified(victim))).code).toBe('DATA_LOSS');
    // The others still read, in buffers the refusals gave back.
    expect((await viaWorkers.readChunk(stored[1]![0])).equals(short)).toBe(true);
  });

  it('fails only the read whose thread dies, with WORKER_CRASHED, and reads the next one on a fresh thread', async () => {
    const crashing = new ChunkStoreWorkers({ size: 1, script: new URL('./crashing-chunk-store-worker.js', import.meta.url) });
    try {
      const repo = await Repository.open(join(dir, 'b'), { workers: crashing });
      const doomed = 'dead' + sha256Hex(randomBytes(8)).slice(4);
      expect(isWorkerPoolError(await rejection(repo.readVerified(doomed)), 'WORKER_CRASHED')).toBe(true);
      const plain = chunkData(CHUNK_SIZE);
      await inProcess.putChunk(sha256Hex(plain), zstdCompress(plain));
      await repo.putChunk(sha256Hex(plain), zstdCompress(plain));
      expect((await repo.readChunk(sha256Hex(plain))).equals(plain)).toBe(true);
    } finally {
      await crashing.close();
    }
  });

  it('lets idle threads exit, starts them all when warmed, and close() ends them and refuses more work', async () => {
    const idle = new ChunkStoreWorkers({ size: 2, idleTimeoutMs: 200 });
    const repo = await Repository.open(join(dir, 'b'), { workers: idle });
    const plain = chunkData(1000);
    await repo.putChunk(sha256Hex(plain), zstdCompress(plain));
    expect(idle.threadCount).toBe(1);
    await expect.poll(() => idle.threadCount, { timeout: 5_000, interval: 50 }).toBe(0);
    // Warming (when a job is dispatched) starts them all again, and they idle out as before.
    repo.chunks.warmWorkers();
    expect(idle.threadCount).toBe(2);
    await expect.poll(() => idle.threadCount, { timeout: 5_000, interval: 50 }).toBe(0);
    await idle.close();
    const other = chunkData(1000);
    expect(isWorkerPoolError(await rejection(repo.putChunk(sha256Hex(other), zstdCompress(other))), 'ABORTED')).toBe(true);
  });
});
