import { createHash } from 'node:crypto';
// The chunk format moved here from hub/repository (FORMAT.md); its argument errors stay the
// repository's INVALID_ARGUMENT so hub callers and their gRPC mapping see no difference.
import { invalidArgument } from '../../hub/repository/errors.js';

/** A chunk's name: SHA-256 of its plaintext, 32 bytes; written as 64 lowercase hex digits. */
export const DIGEST_BYTES = 32;

/**
 * The reserved all-zero digest. In an index it marks a chunk whose plaintext is all zero bytes;
 * such chunks are never stored. No plaintext hashes to it (finding one would break SHA-256).
 */
export const ZERO_DIGEST_HEX = '0'.repeat(DIGEST_BYTES * 2);
const ZERO_DIGEST = Buffer.alloc(DIGEST_BYTES);

const DIGEST_HEX = /^[0-9a-f]{64}$/;

export function isDigestHex(value: string): boolean {
  return DIGEST_HEX.test(value);
}

/** Refuses anything but 64 lowercase hex digits: one spelling per digest, so it is also one file name. */
export function assertDigestHex(value: string, argument = 'digest'): void {
  if (!DIGEST_HEX.test(value)) {
    throw invalidArgument(argument, `${argument} must be 64 lowercase hex digits, got ${JSON.stringify(value.slice(0, 80))}`);
  }
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/**
 * The digests of one disk, in chunk order, packed 32 bytes each into one Buffer. A 2 TiB disk has
 * 524,288 entries: 16 MiB here, against ~70 MiB as an array of hex strings.
 */
export class DigestList {
  private constructor(readonly bytes: Buffer) {}

  /** Wraps (does not copy) packed digests. */
  static fromBytes(bytes: Buffer): DigestList {
    if (bytes.length % DIGEST_BYTES !== 0) {
      throw invalidArgument('digests', `packed digests must be a multiple of ${DIGEST_BYTES} bytes, got ${bytes.length}`);
    }
    return new DigestList(bytes);
  }

  static fromHex(digests: readonly string[]): DigestList {
    const bytes = Buffer.allocUnsafe(digests.length * DIGEST_BYTES);
    digests.forEach((d, i) => {
      assertDigestHex(d, `digests[${i}]`);
      bytes.write(d, i * DIGEST_BYTES, 'hex');
    });
    return new DigestList(bytes);
  }

  get length(): number {
    return this.bytes.length / DIGEST_BYTES;
  }

  /** A view of entry i (no copy). */
  bytesAt(i: number): Buffer {
    return this.bytes.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  hexAt(i: number): string {
    return this.bytes.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  /** True where the entry is the zero-chunk marker. */
  isZeroAt(i: number): boolean {
    return this.bytes.compare(ZERO_DIGEST, 0, DIGEST_BYTES, i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES) === 0;
  }

  setZeroAt(i: number): void {
    this.bytes.fill(0, i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  toHex(): string[] {
    return Array.from({ length: this.length }, (_, i) => this.hexAt(i));
  }
}
