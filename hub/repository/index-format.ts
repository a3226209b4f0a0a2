import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { assertDiskSize, CHUNK_SIZE, chunkCount } from '../../shared/chunk/geometry.js';
import { DIGEST_BYTES, DigestList } from '../../shared/chunk/digest.js';
import { writeFileDurably } from './durable-file.js';
import { hasErrno, invalidArgument, RepositoryError, type IndexCorruptReason } from './errors.js';

/**
 * Index file, format version 1 (FORMAT.md §4). All integers big-endian.
 *
 *   0   4  magic "BHIX"
 *   4   2  format version, u16 (1)
 *   6   2  flags, u16, zero in version 1
 *   8   4  chunk size, u32 (4194304)
 *  12   4  chunk count N, u32 = ceil(disk size / chunk size)
 *  16   8  disk size in bytes, u64 (< 2^53)
 *  24   8  creation time, ms since the Unix epoch (UTC), u64 (< 2^53)
 *  32  32N digests: SHA-256 of chunk i's plaintext at 32 + 32i; all-zero = zero chunk, not stored
 *  32+32N 32  SHA-256 of bytes [0, 32+32N)
 */
export const INDEX_MAGIC = Buffer.from('BHIX', 'latin1');
export const INDEX_VERSION = 1;
export const INDEX_HEADER_BYTES = 32;
export const INDEX_TRAILER_BYTES = 32;

export interface DiskIndex {
  diskSize: number;
  chunkSize: number;
  createdAt: Date;
  /** One per chunk, in disk order; the all-zero digest marks a zero chunk. */
  digests: DigestList;
}

export interface DiskIndexInput {
  diskSize: number;
  createdAt: Date;
  digests: DigestList;
}

/** The file's bytes as three parts (header, digests, trailer), so 16 MiB of digests is not copied. */
export function encodeIndex(index: DiskIndexInput): Buffer[] {
  assertDiskSize(index.diskSize);
  const n = chunkCount(index.diskSize);
  if (index.digests.length !== n) {
    throw invalidArgument('digests', `a disk of ${index.diskSize} bytes has ${n} chunks, got ${index.digests.length} digests`);
  }
  const createdMs = index.createdAt.getTime();
  if (!Number.isSafeInteger(createdMs) || createdMs < 0) {
    throw invalidArgument('createdAt', `createdAt must be a valid date after 1970, got ${String(index.createdAt)}`);
  }
  const header = Buffer.alloc(INDEX_HEADER_BYTES);
  INDEX_MAGIC.copy(header, 0);
  header.writeUInt16BE(INDEX_VERSION, 4);
  header.writeUInt16BE(0, 6);
  header.writeUInt32BE(CHUNK_SIZE, 8);
  header.writeUInt32BE(n, 12);
  header.writeBigUInt64BE(BigInt(index.diskSize), 16);
  header.writeBigUInt64BE(BigInt(createdMs), 24);
  const trailer = createHash('sha256').update(header).update(index.digests.bytes).digest();
  return [header, index.digests.bytes, trailer];
}

function corrupt(path: string, reason: IndexCorruptReason, message: string, cause?: unknown): RepositoryError<'INDEX_CORRUPT'> {
  return new RepositoryError('INDEX_CORRUPT', `index ${path}: ${message}`, { path, reason }, { cause });
}

/**
 * Parses and validates an index file's bytes. The checksum is checked before any field is trusted;
 * magic and version come first so a newer format is reported as such rather than as damage.
 * The returned digests are a view of `bytes` (no copy).
 */
export function decodeIndex(bytes: Buffer, path: string): DiskIndex {
  const minimum = INDEX_HEADER_BYTES + INDEX_TRAILER_BYTES;
  if (bytes.length < minimum) throw corrupt(path, 'truncated', `${bytes.length} bytes, shorter than the minimum ${minimum}`);
  if (!bytes.subarray(0, 4).equals(INDEX_MAGIC)) throw corrupt(path, 'bad-magic', 'not an index file (bad magic)');
  const version = bytes.readUInt16BE(4);
  if (version !== INDEX_VERSION) throw corrupt(path, 'unsupported-version', `format version ${version}, this reader knows ${INDEX_VERSION}`);
  if ((bytes.length - minimum) % DIGEST_BYTES !== 0) {
    throw corrupt(path, 'truncated', `${bytes.length} bytes is not header + whole digests + trailer`);
  }
  const bodyEnd = bytes.length - INDEX_TRAILER_BYTES;
  const actual = createHash('sha256').update(bytes.subarray(0, bodyEnd)).digest();
  if (!actual.equals(bytes.subarray(bodyEnd))) throw corrupt(path, 'checksum-mismatch', 'SHA-256 trailer does not match the contents');

  const flags = bytes.readUInt16BE(6);
  const chunkSize = bytes.readUInt32BE(8);
  const n = bytes.readUInt32BE(12);
  const diskSize = bytes.readBigUInt64BE(16);
  const createdMs = bytes.readBigUInt64BE(24);
  if (flags !== 0) throw corrupt(path, 'bad-header', `unknown flags ${flags}`);
  if (chunkSize !== CHUNK_SIZE) throw corrupt(path, 'bad-header', `chunk size ${chunkSize}, version 1 has ${CHUNK_SIZE}`);
  if (diskSize > BigInt(Number.MAX_SAFE_INTEGER) || createdMs > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw corrupt(path, 'bad-header', 'disk size or creation time out of range');
  }
  if (n !== chunkCount(Number(diskSize))) throw corrupt(path, 'bad-header', `chunk count ${n} does not fit disk size ${diskSize}`);
  if (bodyEnd - INDEX_HEADER_BYTES !== n * DIGEST_BYTES) {
    throw corrupt(path, 'bad-length', `header says ${n} digests, file holds ${(bodyEnd - INDEX_HEADER_BYTES) / DIGEST_BYTES}`);
  }
  return {
    diskSize: Number(diskSize),
    chunkSize,
    createdAt: new Date(Number(createdMs)),
    digests: DigestList.fromBytes(bytes.subarray(INDEX_HEADER_BYTES, bodyEnd)),
  };
}

/** Writes an index file durably (temp beside it + fsync + rename + fsync of the directory). */
export async function writeIndex(path: string, index: DiskIndexInput): Promise<void> {
  const parts = encodeIndex(index);
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(8).toString('hex')}.tmp`);
  await writeFileDurably(tmp, path, parts);
}

/** Reads and validates an index file. INDEX_NOT_FOUND if absent, INDEX_CORRUPT if invalid. */
export async function readIndex(path: string): Promise<DiskIndex> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) throw new RepositoryError('INDEX_NOT_FOUND', `index ${path} does not exist`, { path });
    if (hasErrno(err, 'EIO')) throw corrupt(path, 'unreadable', 'read failed (EIO)', err);
    throw err;
  }
  return decodeIndex(bytes, path);
}
