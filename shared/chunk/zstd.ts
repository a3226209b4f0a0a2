import binding from 'zstd-napi/binding.js';

/**
 * The zstd calls of the chunk format (hub repository and agent pipeline), through zstd-napi's thin
 * binding (libzstd 1.5.7). Its one-shot ZSTD_decompressDCtx writes into a buffer we size, so a
 * crafted stream ("zstd bomb") can never make the hub allocate more than the limit: it fails with
 * dstSize_tooSmall instead.
 * The calls are synchronous; one context per thread is enough and saves its allocation per chunk.
 */
let dctx: binding.DCtx | undefined;
let cctx: binding.CCtx | undefined;

/** Thrown for any stream libzstd refuses; callers turn it into their own typed error. */
export class ZstdError extends Error {
  override name = 'ZstdError';
}

/**
 * Sum of the content sizes the frames declare, or null when a frame leaves it out. Lets the caller
 * refuse an oversized chunk before decoding it. Throws ZstdError for bytes that are not zstd frames.
 */
export function zstdDeclaredSize(src: Uint8Array): number | null {
  let total = 0;
  let rest = src;
  try {
    while (rest.length > 0) {
      const size = binding.getFrameContentSize(rest);
      if (size === null) return null;
      total += size;
      rest = rest.subarray(binding.findFrameCompressedSize(rest));
    }
  } catch (err) {
    throw new ZstdError(`not a zstd stream: ${(err as Error).message}`, { cause: err });
  }
  return total;
}

/**
 * Decompresses `src` into a fresh buffer of `capacity` bytes and returns the part written.
 * Throws ZstdError if the stream is invalid or its output would exceed `capacity`.
 */
export function zstdDecompress(src: Uint8Array, capacity: number): Buffer {
  return zstdDecompressInto(src, Buffer.allocUnsafe(capacity));
}

/** Decompresses `src` into `dst` and returns the part written; ZstdError if it would not fit. */
export function zstdDecompressInto(src: Uint8Array, dst: Buffer): Buffer {
  dctx ??= new binding.DCtx();
  try {
    return dst.subarray(0, dctx.decompress(dst, src));
  } catch (err) {
    throw new ZstdError(`zstd: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * One zstd frame with its content size, as the agent should send chunks. Level 3 is zstd's
 * default. The frame is written into `scratch` when it is at least zstdCompressBound(plain.length)
 * long (a view of it is returned), else into a fresh buffer.
 */
export function zstdCompress(plain: Uint8Array, level = 3, scratch?: Buffer): Buffer {
  cctx ??= new binding.CCtx();
  const bound = binding.compressBound(plain.length);
  const dst = scratch && scratch.length >= bound ? scratch : Buffer.allocUnsafe(bound);
  const n = cctx.compress(dst, plain, level);
  return dst.subarray(0, n);
}

export function zstdCompressBound(length: number): number {
  return binding.compressBound(length);
}
