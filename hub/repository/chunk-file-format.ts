import { crc32 } from 'node:zlib';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { createHash } from 'node:crypto';
import { RepositoryError, type DataLossReason } from './errors.js';
import { ZstdError, zstdDecompress, zstdDecompressInto, zstdDeclaredSize } from '../../shared/chunk/zstd.js';

/**
 * Chunk file, format version 1 (FORMAT.md §3): a 16-byte header, then the payload.
 *
 *   0  4  magic "BHCK"
 *   4  1  format version (1)
 *   5  1  encoding: 0 = none (payload is the plaintext), 1 = zstd (one or more zstd frames)
 *   6  2  reserved, zero
 *   8  4  plaintext length, u32 big-endian, 1..4194304
 *  12  4  CRC-32 (ISO-HDLC, as zlib) of bytes 0..11, u32 big-endian
 *  16  …  payload, to the end of the file
 *
 * The header CRC lets a reader refuse a damaged length before it allocates; the payload needs no
 * checksum of its own because every read re-hashes the plaintext against the file's name.
 */
export const CHUNK_FILE_MAGIC = Buffer.from('BHCK', 'latin1');
export const CHUNK_FILE_VERSION = 1;
export const CHUNK_HEADER_BYTES = 16;

export type ChunkEncoding = 'none' | 'zstd';
const ENCODING_CODES: Record<ChunkEncoding, number> = { none: 0, zstd: 1 };

function dataLoss(digest: string, reason: DataLossReason, message: string, cause?: unknown): RepositoryError<'DATA_LOSS'> {
  return new RepositoryError('DATA_LOSS', `chunk ${digest}: ${message}`, { digest, reason }, { cause });
}

export function encodeChunkHeader(encoding: ChunkEncoding, plaintextLength: number): Buffer {
  const h = Buffer.alloc(CHUNK_HEADER_BYTES);
  CHUNK_FILE_MAGIC.copy(h, 0);
  h.writeUInt8(CHUNK_FILE_VERSION, 4);
  h.writeUInt8(ENCODING_CODES[encoding], 5);
  h.writeUInt32BE(plaintextLength, 8);
  h.writeUInt32BE(crc32(h.subarray(0, 12)), 12);
  return h;
}

export interface ChunkHeader {
  encoding: ChunkEncoding;
  plaintextLength: number;
}

export function decodeChunkHeader(digest: string, file: Buffer): ChunkHeader {
  if (file.length < CHUNK_HEADER_BYTES) throw dataLoss(digest, 'bad-header', `file of ${file.length} bytes has no header`);
  if (!file.subarray(0, 4).equals(CHUNK_FILE_MAGIC)) throw dataLoss(digest, 'bad-header', 'bad magic');
  if (file.readUInt32BE(12) !== crc32(file.subarray(0, 12))) throw dataLoss(digest, 'bad-header', 'header CRC mismatch');
  const version = file.readUInt8(4);
  if (version !== CHUNK_FILE_VERSION) throw dataLoss(digest, 'bad-header', `unsupported chunk format version ${version}`);
  const code = file.readUInt8(5);
  const encoding = (Object.keys(ENCODING_CODES) as ChunkEncoding[]).find((e) => ENCODING_CODES[e] === code);
  if (!encoding) throw dataLoss(digest, 'bad-header', `unknown encoding ${code}`);
  if (file.readUInt16BE(6) !== 0) throw dataLoss(digest, 'bad-header', 'reserved bits set');
  const plaintextLength = file.readUInt32BE(8);
  if (plaintextLength < 1 || plaintextLength > CHUNK_SIZE) {
    throw dataLoss(digest, 'bad-header', `plaintext length ${plaintextLength} out of range`);
  }
  return { encoding, plaintextLength };
}

/**
 * Decodes a payload to plaintext, never producing more than `capacity` bytes; into `scratch`
 * when given (a view of it is returned), else into a fresh buffer.
 */
export function decodePayload(digest: string, encoding: ChunkEncoding, payload: Buffer, capacity: number, scratch?: Buffer): Buffer {
  if (encoding === 'none') return payload;
  try {
    return scratch ? zstdDecompressInto(payload, scratch.subarray(0, capacity)) : zstdDecompress(payload, capacity);
  } catch (err) {
    if (err instanceof ZstdError) throw dataLoss(digest, 'undecodable', err.message, err);
    throw err;
  }
}

export function digestMismatch(digest: string, actual: string): RepositoryError<'DATA_LOSS'> {
  return dataLoss(digest, 'digest-mismatch', `plaintext hashes to ${actual}`);
}

/**
 * This thread's decode buffer for uploads being checked, reused: a fresh 4 MiB buffer per chunk is
 * what made the garbage collector the hub's largest CPU cost. One suffices, the check being
 * synchronous; each worker thread has its own.
 */
let scratch: Buffer | undefined;

/**
 * Checks an upload: decodes it (bounded to one chunk), checks the length and that the plaintext
 * hashes to `digest`. Returns the plaintext length. Throws DATA_LOSS; nothing is written here.
 * Synchronous (node:crypto on this thread): the hub runs it on its chunk store workers.
 */
export function checkUploadSync(digest: string, payload: Buffer, encoding: ChunkEncoding): number {
  let capacity = CHUNK_SIZE;
  if (encoding === 'zstd') {
    let declared: number | null;
    try {
      declared = zstdDeclaredSize(payload);
    } catch (err) {
      if (err instanceof ZstdError) throw dataLoss(digest, 'undecodable', err.message, err);
      throw err;
    }
    if (declared !== null) {
      if (declared > CHUNK_SIZE) throw dataLoss(digest, 'bad-length', `declares ${declared} bytes, more than a chunk (${CHUNK_SIZE})`);
      capacity = declared;
    }
  }
  scratch ??= Buffer.allocUnsafe(CHUNK_SIZE);
  const plaintext = decodePayload(digest, encoding, payload, capacity, scratch);
  if (plaintext.length < 1 || plaintext.length > CHUNK_SIZE) {
    throw dataLoss(digest, 'bad-length', `plaintext of ${plaintext.length} bytes; a chunk holds 1..${CHUNK_SIZE}`);
  }
  const actual = createHash('sha256').update(plaintext).digest('hex');
  if (actual !== digest) throw digestMismatch(digest, actual);
  return plaintext.length;
}

