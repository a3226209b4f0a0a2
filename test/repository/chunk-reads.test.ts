/**
 * Pooled chunk reads: verified like readChunk (verify's path), or decoded but not hashed (the
 * restore's, whose agent hashes each chunk), into reused buffers with room for a message header
 * before the plaintext; a file that cannot be decoded is refused with DATA_LOSS either way.
 */
import { randomBytes } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
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

describe('readDecoded', () => {
  it('returns the decoded plaintext without hashing it: content changed on disk comes back as it is, where readVerified refuses it', async () => {
    const a = randomBytes(1 << 20);
    const { digest: da } = await putPlain(repo, a);
    const good = await repo.readDecoded(da);
    expect(good.plaintext.equals(a)).toBe(true);
    expect(good.headroom).toBe(READ_HEADROOM);
    good.release();
    // Random data is stored in zstd raw blocks: a byte flipped inside one still decodes.
    const path = repo.chunks.chunkPath(da);
    const file = await readFile(path);
    file[file.length >> 1]! ^= 0xff;
    await writeFile(path, file);
    const changed = await repo.readDecoded(da);
    expect(changed.plaintext.length).toBe(a.length);
    expect(changed.plaintext.equals(a)).toBe(false);
    changed.release();
    expect((await rejection(repo.readVerified(da))).code).toBe('DATA_LOSS');
  });

  it('refuses a file that no longer decodes with DATA_LOSS and a missing one with CHUNK_MISSING', async () => {
    const a = randomBytes(1 << 20);
    const { digest: da } = await putPlain(repo, a);
    const path = repo.chunks.chunkPath(da);
    await truncate(path, (await readFile(path)).length - 100);
    const err = await rejection(repo.readDecoded(da));
    expect((err as RepositoryError).code).toBe('DATA_LOSS');
    expect(err.message).toContain(da);
    expect(((await rejection(repo.readDecoded('ab'.repeat(32)))) as RepositoryError).code).toBe('CHUNK_MISSING');
  });
});
