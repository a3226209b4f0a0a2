/**
 * Pooled chunk reads (the restore path): verified like readChunk, into reused buffers with room
 * for a message header before the plaintext, and a damaged file still refused with DATA_LOSS.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { READ_HEADROOM } from '../../hub/repository/chunk-reads.js';
import { RepositoryError, type Repository } from '../../hub/repository/index.js';
import { putPlain, rejection, tempRepository } from './fixtures.js';

let repo: Repository;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ repo, cleanup } = await tempRepository()));
afterEach(() => cleanup());

describe('readVerified', () => {
  it('returns the plaintext with headroom before it, and reuses the buffer once released', async () => {
    const a = randomBytes(3 << 20);
    const b = Buffer.from('compressible '.repeat(50_000));
    const { digest: da } = await putPlain(repo, a);
    const { digest: db } = await putPlain(repo, b);

    const first = await repo.readVerified(da);
    expect(first.plaintext.equals(a)).toBe(true);
    expect(first.headroom).toBe(READ_HEADROOM);
    expect(first.plaintext.byteOffset).toBeGreaterThanOrEqual(READ_HEADROOM);
    const held = first.plaintext.buffer;
    // A second read while the first is held gets a buffer of its own.
    const second = await repo.readVerified(db);
    expect(second.plaintext.buffer).not.toBe(held);
    expect(second.plaintext.equals(b)).toBe(true);
    first.release();
    second.release();
    const third = await repo.readVerified(da);
    expect([held, second.plaintext.buffer]).toContain(third.plaintext.buffer);
    expect(third.plaintext.equals(a)).toBe(true);
    third.release();
  });

  it('refuses a damaged file with DATA_LOSS and a missing one with CHUNK_MISSING', async () => {
    const a = randomBytes(1 << 20);
    const { digest: da } = await putPlain(repo, a);
    const path = repo.chunks.chunkPath(da);
    const file = await readFile(path);
    file[file.length - 1]! ^= 0xff;
    await writeFile(path, file);

    const err = await rejection(repo.readVerified(da));
    expect(err).toBeInstanceOf(RepositoryError);
    expect((err as RepositoryError).code).toBe('DATA_LOSS');
    expect(err.message).toContain(da);
    const missing = await rejection(repo.readVerified('ab'.repeat(32)));
    expect((missing as RepositoryError).code).toBe('CHUNK_MISSING');
  });
});
