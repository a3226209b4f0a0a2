import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHUNK_SIZE, DigestList, readIndex, writeIndex, ZERO_DIGEST_HEX } from '../../hub/repository/index.js';
import { rejection } from './fixtures.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backhaul-index-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const createdAt = new Date('2025-03-04T05:06:07.089Z');

/** A disk of 5 chunks and a 1-byte tail: 6 digests, two of them zero chunks. */
function sample(): { diskSize: number; digests: string[] } {
  const digests = Array.from({ length: 6 }, () => randomBytes(32).toString('hex'));
  digests[1] = ZERO_DIGEST_HEX;
  digests[4] = ZERO_DIGEST_HEX;
  return { diskSize: 5 * CHUNK_SIZE + 1, digests };
}

async function written(): Promise<{ path: string; bytes: Buffer; digests: string[] }> {
  const { diskSize, digests } = sample();
  const path = join(dir, 'disk.bhidx');
  await writeIndex(path, { diskSize, createdAt, digests: DigestList.fromHex(digests) });
  return { path, bytes: await readFile(path), digests };
}

/** Rewrites the trailer so only the intended field is wrong, not the checksum. */
function resealed(bytes: Buffer): Buffer {
  const body = bytes.subarray(0, bytes.length - 32);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

async function expectCorrupt(path: string, bytes: Buffer, reason: string): Promise<void> {
  await writeFile(path, bytes);
  const err = await rejection(readIndex(path));
  expect(err.code).toBe('INDEX_CORRUPT');
  expect(err.details).toEqual({ path, reason });
}

describe('index files', () => {
  it('round-trip: header fields, digests in order, zero markers', async () => {
    const { path, bytes, digests } = await written();
    expect(bytes.length).toBe(32 + 6 * 32 + 32);
    const index = await readIndex(path);
    expect(index.diskSize).toBe(5 * CHUNK_SIZE + 1);
    expect(index.chunkSize).toBe(CHUNK_SIZE);
    expect(index.createdAt.toISOString()).toBe(createdAt.toISOString());
    expect(index.digests.toHex()).toEqual(digests);
    expect([0, 1, 2, 3, 4, 5].map((i) => index.digests.isZeroAt(i))).toEqual([false, true, false, false, true, false]);
    expect(await readdir(dir)).toEqual(['disk.bhidx']);
  });

  it('lays out bytes exactly as FORMAT.md says', async () => {
    const { bytes, digests } = await written();
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('BHIX');
    expect(bytes.readUInt16BE(4)).toBe(1);
    expect(bytes.readUInt16BE(6)).toBe(0);
    expect(bytes.readUInt32BE(8)).toBe(4_194_304);
    expect(bytes.readUInt32BE(12)).toBe(6);
    expect(bytes.readBigUInt64BE(16)).toBe(BigInt(5 * CHUNK_SIZE + 1));
    expect(bytes.readBigUInt64BE(24)).toBe(BigInt(createdAt.getTime()));
    expect(bytes.subarray(32 + 2 * 32, 32 + 3 * 32).toString('hex')).toBe(digests[2]);
    const trailer = createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest();
    expect(bytes.subarray(bytes.length - 32).equals(trailer)).toBe(true);
  });

  it('handles an empty disk and an exact multiple of the chunk size', async () => {
    const empty = join(dir, 'empty.bhidx');
    await writeIndex(empty, { diskSize: 0, createdAt, digests: DigestList.fromHex([]) });
    expect((await readIndex(empty)).digests.length).toBe(0);
    const exact = join(dir, 'exact.bhidx');
    const ds = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
    await writeIndex(exact, { diskSize: 2 * CHUNK_SIZE, createdAt, digests: DigestList.fromHex(ds) });
    expect((await readIndex(exact)).digests.toHex()).toEqual(ds);
  });

  it('refuses to write a digest count that does not fit the disk size', async () => {
    const err = await rejection(writeIndex(join(dir, 'x.bhidx'), { diskSize: CHUNK_SIZE + 1, createdAt, digests: DigestList.fromHex([ZERO_DIGEST_HEX]) }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(await readdir(dir)).toEqual([]);
  });

  it('detects a flipped bit in every byte of the file (header, digests, trailer)', async () => {
    const { path, bytes } = await written();
    const reasons = new Set<string>();
    for (let at = 0; at < bytes.length; at++) {
      const b = Buffer.from(bytes);
      b[at] ^= 1 << at % 8;
      await writeFile(path, b);
      const err = await rejection(readIndex(path));
      expect(err.code, `byte ${at}`).toBe('INDEX_CORRUPT');
      reasons.add((err.details as { reason: string }).reason);
    }
    // Magic and version are judged first; everything else by the checksum.
    expect([...reasons].sort()).toEqual(['bad-magic', 'checksum-mismatch', 'unsupported-version']);
  });

  it('detects truncation at any length and appended bytes', async () => {
    const { path, bytes } = await written();
    for (const len of [0, 1, 31, 32, 63, 64, 95, 96, bytes.length - 33, bytes.length - 32, bytes.length - 1]) {
      await writeFile(path, bytes.subarray(0, len));
      const err = await rejection(readIndex(path));
      expect(err.code, `length ${len}`).toBe('INDEX_CORRUPT');
      expect(['truncated', 'checksum-mismatch'], `length ${len}`).toContain((err.details as { reason: string }).reason);
    }
    await expectCorrupt(path, Buffer.concat([bytes, Buffer.alloc(32)]), 'checksum-mismatch');
    await expectCorrupt(path, Buffer.concat([bytes, Buffer.alloc(1)]), 'truncated');
  });

  it('reports a newer format version as unsupported, even with a valid checksum', async () => {
    const { path, bytes } = await written();
    const v2 = Buffer.from(bytes);
    v2.writeUInt16BE(2, 4);
    await expectCorrupt(path, resealed(v2), 'unsupported-version');
  });

  it('refuses inconsistent fields even under a valid checksum', async () => {
    const { path, bytes } = await written();
    const flags = Buffer.from(bytes);
    flags.writeUInt16BE(1, 6);
    await expectCorrupt(path, resealed(flags), 'bad-header');
    const chunkSize = Buffer.from(bytes);
    chunkSize.writeUInt32BE(1 << 20, 8);
    await expectCorrupt(path, resealed(chunkSize), 'bad-header');
    const count = Buffer.from(bytes);
    count.writeUInt32BE(7, 12);
    await expectCorrupt(path, resealed(count), 'bad-header');
    const size = Buffer.from(bytes);
    size.writeBigUInt64BE(BigInt(7 * CHUNK_SIZE), 16);
    await expectCorrupt(path, resealed(size), 'bad-header');
    // Header and length agree with each other but not with the digests present.
    const short = Buffer.from(bytes.subarray(0, bytes.length - 64));
    await expectCorrupt(path, resealed(Buffer.concat([short, Buffer.alloc(32)])), 'bad-length');
  });

  it('says INDEX_NOT_FOUND for a missing file', async () => {
    const path = join(dir, 'nope.bhidx');
    const err = await rejection(readIndex(path));
    expect(err.code).toBe('INDEX_NOT_FOUND');
    expect(err.details).toEqual({ path });
  });
});
