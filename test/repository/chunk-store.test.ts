import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import binding from 'zstd-napi/binding.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHUNK_HEADER_BYTES, CHUNK_SIZE, RepositoryError, zstdCompress, type Repository } from '../../hub/repository/index.js';
import { age, chunkData, putPlain, rejection, sha256Hex, tempRepository } from './fixtures.js';

let repo: Repository;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ repo, cleanup } = await tempRepository()));
afterEach(async () => cleanup());

/** Every chunk file under chunks/, as digests. */
async function storedDigests(): Promise<string[]> {
  const out: string[] = [];
  for (const dir of await readdir(repo.layout.chunksDir)) out.push(...(await readdir(join(repo.layout.chunksDir, dir))));
  return out.sort();
}

describe('putChunk and readChunk', () => {
  it('round-trips zstd and uncompressed uploads, full and short chunks, through the documented file format', async () => {
    const full = chunkData(CHUNK_SIZE);
    const short = chunkData(1_000_003);
    const raw = randomBytes(65_536);
    const d1 = sha256Hex(full);
    const d2 = sha256Hex(short);
    const d3 = sha256Hex(raw);
    const compressed = zstdCompress(full);
    expect(await repo.putChunk(d1, compressed)).toEqual({ created: true, plaintextBytes: CHUNK_SIZE, storedBytes: CHUNK_HEADER_BYTES + compressed.length });
    await repo.putChunk(d2, zstdCompress(short));
    expect(await repo.putChunk(d3, raw, 'none')).toMatchObject({ created: true, plaintextBytes: 65_536 });

    expect((await repo.readChunk(d1)).equals(full)).toBe(true);
    expect((await repo.readChunk(d2)).equals(short)).toBe(true);
    expect((await repo.readChunk(d3)).equals(raw)).toBe(true);
    expect(await storedDigests()).toEqual([d1, d2, d3].sort());

    // The file is header + the uploaded zstd bytes, at chunks/<first byte>/<digest>.
    const file = await readFile(join(repo.layout.chunksDir, d1.slice(0, 2), d1));
    expect(file.subarray(0, 4).toString('latin1')).toBe('BHCK');
    expect(file[4]).toBe(1);
    expect(file[5]).toBe(1);
    expect(file.readUInt32BE(8)).toBe(CHUNK_SIZE);
    expect(file.subarray(CHUNK_HEADER_BYTES).equals(compressed)).toBe(true);
    expect((await readFile(join(repo.layout.chunksDir, d3.slice(0, 2), d3)))[5]).toBe(0);
    expect(await readdir(repo.layout.tmpDir)).toEqual([]);
  });

  it('refuses content that does not hash to the claimed digest with DATA_LOSS and stores nothing', async () => {
    const plain = chunkData(CHUNK_SIZE);
    const claimed = sha256Hex(chunkData(CHUNK_SIZE));
    const err = await rejection(repo.putChunk(claimed, zstdCompress(plain)));
    expect(err).toBeInstanceOf(RepositoryError);
    expect(err.code).toBe('DATA_LOSS');
    expect(err.details).toEqual({ digest: claimed, reason: 'digest-mismatch' });
    expect(err.message).toContain(claimed);
    const errRaw = await rejection(repo.putChunk(claimed, plain, 'none'));
    expect(errRaw.details).toEqual({ digest: claimed, reason: 'digest-mismatch' });
    expect(await storedDigests()).toEqual([]);
    expect(await readdir(repo.layout.tmpDir)).toEqual([]);
    expect(await repo.missingChunks([claimed, sha256Hex(plain)])).toEqual([claimed, sha256Hex(plain)]);
  });

  it('refuses a plaintext over 4 MiB, declared or not (a zstd bomb cannot make it allocate more)', async () => {
    const big = Buffer.alloc(CHUNK_SIZE + 1, 7);
    const declared = await rejection(repo.putChunk(sha256Hex(big), zstdCompress(big)));
    expect(declared.details).toEqual({ digest: sha256Hex(big), reason: 'bad-length' });

    // 64 MiB of zeros fits in a few KiB of zstd; declared in the frame header, it is refused unread.
    const input = Buffer.alloc(64 << 20);
    const declaredBomb = zstdCompress(input);
    expect(declaredBomb.length).toBeLessThan(10_000);
    expect((await rejection(repo.putChunk(sha256Hex(input), declaredBomb))).details).toEqual({ digest: sha256Hex(input), reason: 'bad-length' });

    // Without a content size in the frame, decoding stops at the 4 MiB output buffer.
    const cctx = new binding.CCtx();
    cctx.setParameter(binding.CParameter.contentSizeFlag, 0);
    const out = Buffer.alloc(1 << 20);
    const [, produced] = cctx.compressStream2(out, input, binding.EndDirective.end);
    const frame = out.subarray(0, produced);
    expect(binding.getFrameContentSize(frame)).toBeNull();
    const undeclared = await rejection(repo.putChunk(sha256Hex(input), frame));
    expect(undeclared.code).toBe('DATA_LOSS');
    expect(undeclared.details).toEqual({ digest: sha256Hex(input), reason: 'undecodable' });

    const rawBig = await rejection(repo.putChunk(sha256Hex(big), big, 'none'));
    expect(rawBig.details).toEqual({ digest: sha256Hex(big), reason: 'bad-length' });
    const empty = await rejection(repo.putChunk(sha256Hex(Buffer.alloc(0)), Buffer.alloc(0), 'none'));
    expect(empty.details).toMatchObject({ reason: 'bad-length' });
    expect(await storedDigests()).toEqual([]);
  });

  it('refuses bytes that are not zstd with DATA_LOSS (undecodable)', async () => {
    const plain = chunkData(100_000);
    const err = await rejection(repo.putChunk(sha256Hex(plain), plain));
    expect(err.details).toEqual({ digest: sha256Hex(plain), reason: 'undecodable' });
    const truncated = zstdCompress(plain).subarray(0, 5_000);
    expect((await rejection(repo.putChunk(sha256Hex(plain), truncated))).details).toMatchObject({ reason: 'undecodable' });
    expect(await storedDigests()).toEqual([]);
  });

  it('treats writing a chunk it already has as a no-op that refreshes its mtime', async () => {
    const { digest, plain } = await putPlain(repo, chunkData(300_000));
    const path = repo.layout.chunkPath(digest);
    const before = await readFile(path);
    await age(path, 3_600_000);
    const old = (await stat(path)).mtimeMs;
    // Even garbage under the same name is not looked at: the stored chunk already proves the name.
    expect(await repo.putChunk(digest, Buffer.from('garbage'))).toEqual({ created: false });
    expect((await readFile(path)).equals(before)).toBe(true);
    expect((await stat(path)).mtimeMs).toBeGreaterThan(old + 3_000_000);
    expect((await repo.readChunk(digest)).equals(plain)).toBe(true);
  });

  it('survives concurrent uploads of the same chunk', async () => {
    const plain = chunkData(CHUNK_SIZE);
    const digest = sha256Hex(plain);
    const z = zstdCompress(plain);
    const results = await Promise.all(Array.from({ length: 6 }, () => repo.putChunk(digest, z)));
    expect(results.some((r) => r.created)).toBe(true);
    expect((await repo.readChunk(digest)).equals(plain)).toBe(true);
    expect(await storedDigests()).toEqual([digest]);
    expect(await readdir(repo.layout.tmpDir)).toEqual([]);
  });

  it('rejects malformed digests with INVALID_ARGUMENT', async () => {
    for (const bad of ['', 'abc', 'A'.repeat(64), '../'.repeat(21) + 'a', 'g'.repeat(64)]) {
      expect((await rejection(repo.putChunk(bad, Buffer.from('x'), 'none'))).code).toBe('INVALID_ARGUMENT');
      expect((await rejection(repo.readChunk(bad))).code).toBe('INVALID_ARGUMENT');
    }
    expect((await rejection(repo.missingChunks(['a'.repeat(64), 'nope']))).details).toEqual({ argument: 'digests[1]' });
  });
});

describe('readChunk verifies on every read', () => {
  async function corruptAndRead(mutate: (file: Buffer) => Buffer): Promise<Error & { code?: string; details?: unknown }> {
    const { digest } = await putPlain(repo, chunkData(500_000));
    const path = repo.layout.chunkPath(digest);
    await writeFile(path, mutate(await readFile(path)));
    const err = await rejection(repo.readChunk(digest));
    expect(err.message).toContain(digest);
    expect((err.details as { digest: string }).digest).toBe(digest);
    return err;
  }

  it('names the digest with DATA_LOSS when the payload is damaged', async () => {
    const err = await corruptAndRead((f) => {
      f[f.length - 100] ^= 0x40;
      return f;
    });
    expect(err.code).toBe('DATA_LOSS');
    expect(['digest-mismatch', 'undecodable']).toContain((err.details as { reason: string }).reason);
  });

  it('detects a flipped byte in an uncompressed payload as a digest mismatch', async () => {
    const plain = randomBytes(10_000);
    const digest = sha256Hex(plain);
    await repo.putChunk(digest, plain, 'none');
    const path = repo.layout.chunkPath(digest);
    const f = await readFile(path);
    f[CHUNK_HEADER_BYTES + 5_000] ^= 1;
    await writeFile(path, f);
    expect((await rejection(repo.readChunk(digest))).details).toEqual({ digest, reason: 'digest-mismatch' });
  });

  it('detects every header byte flipped, and truncation', async () => {
    for (let at = 0; at < CHUNK_HEADER_BYTES; at++) {
      const err = await corruptAndRead((f) => {
        f[at] ^= 0x01;
        return f;
      });
      expect(err.code, `byte ${at}`).toBe('DATA_LOSS');
      expect(err.details, `byte ${at}`).toMatchObject({ reason: 'bad-header' });
    }
    expect((await corruptAndRead((f) => f.subarray(0, 10))).details).toMatchObject({ reason: 'bad-header' });
    expect((await corruptAndRead((f) => f.subarray(0, f.length - 1))).details).toMatchObject({ reason: 'undecodable' });
  });

  it('says CHUNK_MISSING for a chunk it does not have', async () => {
    const digest = sha256Hex(Buffer.from('never stored'));
    const err = await rejection(repo.readChunk(digest));
    expect(err.code).toBe('CHUNK_MISSING');
    expect(err.details).toEqual({ digests: [digest], count: 1 });
  });
});

describe('missingChunks', () => {
  it('returns exactly the absent digests, in input order, once each, across thousands', async () => {
    const present: string[] = [];
    for (let i = 0; i < 40; i++) present.push((await putPlain(repo, randomBytes(1_000 + i))).digest);
    const absent = Array.from({ length: 3_000 }, () => sha256Hex(randomBytes(32)));
    // Interleave, with duplicates of both kinds.
    const asked = [...absent.slice(0, 1_500), ...present, ...absent.slice(1_500), ...present.slice(0, 5), absent[7]];
    const t0 = performance.now();
    const missing = await repo.missingChunks(asked);
    const ms = performance.now() - t0;
    expect(missing).toEqual(absent);
    expect(await repo.missingChunks(present)).toEqual([]);
    expect(await repo.missingChunks([])).toEqual([]);
    expect(ms).toBeLessThan(5_000);
  });

  it('touches the chunks it reports present, so a garbage collection keeps them for the grace', async () => {
    const { digest } = await putPlain(repo, randomBytes(5_000));
    const path = repo.layout.chunkPath(digest);
    await age(path, 86_400_000);
    await repo.missingChunks([digest]);
    expect(Date.now() - (await stat(path)).mtimeMs).toBeLessThan(60_000);
  });
});

describe('crash leftovers', () => {
  it('never takes a temp file for a chunk, and a later upload of that chunk succeeds', async () => {
    const plain = chunkData(CHUNK_SIZE);
    const digest = sha256Hex(plain);
    const z = zstdCompress(plain);
    // What a write killed before its rename leaves: a partial file in tmp/.
    const leftover = repo.layout.tempPath('chunk');
    await writeFile(leftover, z.subarray(0, 1000));
    expect(await repo.missingChunks([digest])).toEqual([digest]);
    expect(await repo.hasChunk(digest)).toBe(false);
    expect((await rejection(repo.readChunk(digest))).code).toBe('CHUNK_MISSING');
    expect(await repo.putChunk(digest, z)).toMatchObject({ created: true });
    expect((await repo.readChunk(digest)).equals(plain)).toBe(true);
    expect(await storedDigests()).toEqual([digest]);
  });
});
