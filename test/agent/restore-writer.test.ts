/**
 * The restore writer thread (a real worker thread, real files): chunks verified before they are
 * written, zero runs left as holes in a fresh file and written over an old one, the image's
 * SHA-256 over every byte in order, and refusals with stable codes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { RestoreError } from '../../agent/jobs/restore-error.js';
import { RestoreWriter } from '../../agent/jobs/restore-writer.js';
import { tempDir } from '../support/processes.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** A chunk in an ArrayBuffer of its own after 40 bytes of other fields: how grpc-js hands over a DownloadChunksResponse. */
function received(data: Buffer): Buffer {
  const message = new ArrayBuffer(40 + data.length);
  const view = Buffer.from(message, 40, data.length);
  data.copy(view);
  return view;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function destination(fresh: boolean, size: number) {
  const path = join(await tempDir('bh-rw'), 'disk.raw');
  if (!fresh) await writeFile(path, Buffer.alloc(size, 0xee));
  const fh = await open(path, fresh ? 'wx' : 'r+');
  await fh.truncate(size);
  const writer = await RestoreWriter.open(fh.fd, fresh);
  closers.push(async () => {
    await writer.close();
    await fh.close();
  });
  return { path, writer };
}

describe('RestoreWriter', () => {
  it('writes verified chunks in order, leaves zero runs as holes in a fresh file, and hashes the whole image', async () => {
    const size = 3 * CHUNK_SIZE + 3_000;
    const a = randomBytes(CHUNK_SIZE);
    const tail = randomBytes(3_000);
    const { path, writer } = await destination(true, size);
    const message = received(a);
    const written = writer.chunk(0, 0, sha(a), message);
    expect(message.length).toBe(0); // moved, not copied: the message's buffer is the thread's now
    await written;
    await writer.zeros(CHUNK_SIZE, 2 * CHUNK_SIZE);
    await writer.chunk(3, 3 * CHUNK_SIZE, sha(tail), tail);
    const expected = Buffer.concat([a, Buffer.alloc(2 * CHUNK_SIZE), tail]);
    expect(await writer.finish()).toBe(sha(expected));
    expect((await readFile(path)).equals(expected)).toBe(true);
    // The two zero chunks were never written: the file holds about one chunk and the tail.
    expect((await stat(path)).blocks * 512).toBeLessThan(CHUNK_SIZE + 2 * 65_536);
  });

  it('copies a chunk that is only part of its buffer (a read buffer of several messages), leaving that buffer to the caller', async () => {
    const b = randomBytes(CHUNK_SIZE / 4);
    const { path, writer } = await destination(true, CHUNK_SIZE / 4);
    const shared = Buffer.concat([Buffer.alloc(100, 1), b, Buffer.alloc(CHUNK_SIZE, 2)]);
    const written = writer.chunk(0, 0, sha(b), shared.subarray(100, 100 + b.length));
    shared.fill(0); // still the caller's: copied when handed over
    await written;
    expect(await writer.finish()).toBe(sha(b));
    expect((await readFile(path)).equals(b)).toBe(true);
  });

  it('writes zero runs over an existing file', async () => {
    const size = 2 * CHUNK_SIZE;
    const b = randomBytes(CHUNK_SIZE);
    const { path, writer } = await destination(false, size);
    await writer.zeros(0, CHUNK_SIZE);
    await writer.chunk(1, CHUNK_SIZE, sha(b), received(b));
    const expected = Buffer.concat([Buffer.alloc(CHUNK_SIZE), b]);
    expect(await writer.finish()).toBe(sha(expected));
    expect((await readFile(path)).equals(expected)).toBe(true);
  });

  it('refuses a chunk that does not match its digest with DATA_LOSS, and writes nothing of it', async () => {
    const good = randomBytes(CHUNK_SIZE);
    const { path, writer } = await destination(true, CHUNK_SIZE);
    const bad = Buffer.from(good);
    bad[100]! ^= 1;
    const err = await writer.chunk(0, 0, sha(good), received(bad)).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RestoreError);
    expect((err as RestoreError).code).toBe('DATA_LOSS');
    expect((err as RestoreError).message).toBe(`chunk 0 (${sha(good)}) does not match its digest`);
    expect((await readFile(path)).equals(Buffer.alloc(CHUNK_SIZE))).toBe(true);
  });

  it('fails a write the destination refuses with WRITE_FAILED, naming the errno', async () => {
    const path = join(await tempDir('bh-rw'), 'ro.raw');
    await writeFile(path, Buffer.alloc(CHUNK_SIZE));
    const fh = await open(path, 'r'); // a descriptor that cannot write: EBADF
    const writer = await RestoreWriter.open(fh.fd, false);
    closers.push(async () => {
      await writer.close();
      await fh.close();
    });
    const c = randomBytes(CHUNK_SIZE);
    const err = await writer.chunk(0, 0, sha(c), received(c)).then(() => null, (e: unknown) => e);
    expect((err as RestoreError).code).toBe('WRITE_FAILED');
    expect((err as RestoreError).message).toMatch(/^writing chunk 0 failed: EBADF/);
  });
});
