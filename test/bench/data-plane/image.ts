import { createHash, randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
const CHUNK = 4 * MiB;

/** The benchmark's disk: this much random data, then this much zeros. */
export interface ImageSpec {
  randomBytes: number;
  zeroBytes: number;
}

export const imageSize = (s: ImageSpec) => s.randomBytes + s.zeroBytes;

/**
 * Writes the raw image: random data, then zeros. The zeros are a hole (the file is truncated to
 * its size), as `qemu-img convert -O raw` or a fresh thin disk would leave them; every reader
 * still reads them as zeros, and no tool is told where the hole is.
 */
export async function writeRawImage(path: string, spec: ImageSpec): Promise<void> {
  const fh = await open(path, 'wx', 0o600);
  try {
    const block = Buffer.allocUnsafe(16 * MiB);
    for (let at = 0; at < spec.randomBytes; at += block.length) {
      const n = Math.min(block.length, spec.randomBytes - at);
      randomFillSync(block, 0, n);
      let done = 0;
      while (done < n) done += (await fh.write(block, done, n - done, at + done)).bytesWritten;
    }
    await fh.truncate(imageSize(spec));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** One rewrite: `data` at `offset`. */
export interface Rewrite {
  offset: number;
  data: Buffer;
}

/**
 * `count` rewrites of `length` random bytes, spread evenly over the disk (both the random and
 * the zero part) and aligned to the 4 MiB chunk grid, so `count × length` bytes change in
 * exactly `count × length / 4 MiB` chunks. (An unaligned 4 MiB write touches two chunks; a
 * chunk-granular reader must then read twice the changed bytes.)
 */
export function planRewrites(size: number, count: number, length: number): Rewrite[] {
  const chunks = Math.floor(size / CHUNK);
  const stride = Math.floor(chunks / count);
  const perWrite = Math.ceil(length / CHUNK);
  if (stride < perWrite) throw new Error(`${count} rewrites of ${length} bytes do not fit in ${size} bytes`);
  const out: Rewrite[] = [];
  for (let k = 0; k < count; k++) {
    // A different position within each stride, so the writes do not all sit at stride starts.
    const chunk = k * stride + ((k * 7) % (stride - perWrite + 1));
    const data = Buffer.allocUnsafe(length);
    randomFillSync(data);
    out.push({ offset: chunk * CHUNK, data });
  }
  return out;
}

/** The chunks a set of rewrites touches. */
export function touchedChunks(rewrites: readonly Rewrite[]): number {
  const touched = new Set<number>();
  for (const r of rewrites) for (let c = Math.floor(r.offset / CHUNK); c <= Math.floor((r.offset + r.data.length - 1) / CHUNK); c++) touched.add(c);
  return touched.size;
}

/** Applies rewrites to a raw file in place and makes them durable. */
export async function applyRewrites(path: string, rewrites: readonly Rewrite[]): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    for (const r of rewrites) {
      let done = 0;
      while (done < r.data.length) done += (await fh.write(r.data, done, r.data.length - done, r.offset + done)).bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** SHA-256 of a file, read in 4 MiB pieces. */
export async function sha256File(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
    return h.digest('hex');
  } finally {
    await fh.close();
  }
}
