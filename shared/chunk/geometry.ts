import { sha256 } from './digest.js';
// The chunk format moved here from hub/repository (FORMAT.md); its argument errors stay the
// repository's INVALID_ARGUMENT so hub callers and their gRPC mapping see no difference.
import { invalidArgument } from '../../hub/repository/errors.js';

/** Images are cut into fixed chunks of this size; only a disk's last chunk may be shorter. */
export const CHUNK_SIZE = 4 * 1024 * 1024;

/** A disk size must be a non-negative safe integer (up to 8 PiB). */
export function assertDiskSize(diskSize: number, argument = 'diskSize'): void {
  if (!Number.isSafeInteger(diskSize) || diskSize < 0) {
    throw invalidArgument(argument, `${argument} must be a non-negative safe integer, got ${diskSize}`);
  }
}

/** N = ceil(diskSize / CHUNK_SIZE). */
export function chunkCount(diskSize: number): number {
  return Math.ceil(diskSize / CHUNK_SIZE);
}

export function chunkOffset(index: number): number {
  return index * CHUNK_SIZE;
}

/** Plaintext length of chunk `index` of a disk: CHUNK_SIZE, except a shorter last chunk. */
export function chunkLength(diskSize: number, index: number): number {
  return Math.min(CHUNK_SIZE, diskSize - index * CHUNK_SIZE);
}

const zeroDigests = new Map<number, Buffer>();

/**
 * SHA-256 of `length` zero bytes: what an agent that does not special-case zeros would send for a
 * zero chunk. Commit rewrites it to the zero marker. At most two lengths per disk, so cached.
 */
export function zeroChunkDigest(length: number): Buffer {
  let d = zeroDigests.get(length);
  if (!d) {
    d = sha256(Buffer.alloc(length));
    if (zeroDigests.size < 64) zeroDigests.set(length, d);
  }
  return d;
}
