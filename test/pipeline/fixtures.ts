import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DiskView, Snapshot } from '../../agent/drivers/driver.js';
import { FileDriver } from '../../agent/drivers/file/file-driver.js';
import { CHUNK_SIZE, chunkLength, type DigestList, Repository } from '../../hub/repository/index.js';

export const MiB = 1024 * 1024;

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A temp directory with a fresh repository in it; call cleanup in afterEach. */
export async function workspace(): Promise<{ dir: string; repo: Repository; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'backhaul-pipeline-'));
  const repo = await Repository.create(join(dir, 'repo'));
  return { dir, repo, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * What each 4 MiB chunk of a test image holds: fresh random bytes, zeros (left as a hole), a copy
 * of an earlier chunk, or given bytes. `tail` makes the image end in a short last chunk of that
 * many bytes.
 */
export type ChunkFill = 'random' | 'zero' | { copyOf: number } | { data: Buffer };

export interface TestImage {
  path: string;
  size: number;
  /** SHA-256 of the whole image. */
  sha256: string;
  /** SHA-256 of each chunk, null for zero chunks. */
  chunkDigests: (string | null)[];
}

/** Writes an image chunk by chunk (never holding more than a chunk), zero chunks as holes. */
export async function writeImage(path: string, fills: ChunkFill[], tail = 0): Promise<TestImage> {
  const size = (tail > 0 ? fills.length - 1 : fills.length) * CHUNK_SIZE + tail;
  const fh = await open(path, 'w');
  const whole = createHash('sha256');
  const chunkDigests: (string | null)[] = [];
  const kept = new Map<number, Buffer>();
  try {
    await fh.truncate(size);
    for (const [i, fill] of fills.entries()) {
      const len = chunkLength(size, i);
      let data: Buffer;
      if (fill === 'zero') data = Buffer.alloc(len);
      else if (fill === 'random') data = randomBytes(len);
      else if ('data' in fill) data = fill.data.subarray(0, len);
      else data = kept.get(fill.copyOf)!.subarray(0, len);
      if (fills.some((f) => typeof f === 'object' && 'copyOf' in f && f.copyOf === i)) kept.set(i, data);
      if (fill !== 'zero') await fh.write(data, 0, len, i * CHUNK_SIZE);
      whole.update(data);
      chunkDigests.push(fill === 'zero' ? null : sha256Hex(data));
    }
  } finally {
    await fh.close();
  }
  return { path, size, sha256: whole.digest('hex'), chunkDigests };
}

/** Overwrites `length` bytes at `offset` with random data. */
export async function scribble(path: string, offset: number, length: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(randomBytes(length), 0, length, offset);
  } finally {
    await fh.close();
  }
}

export async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    for await (const chunk of fh.createReadStream({ highWaterMark: CHUNK_SIZE })) h.update(chunk as Buffer);
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** Opens images through the real file driver, as the agent would. */
export async function openImages(disks: Record<string, string>): Promise<Snapshot> {
  return new FileDriver().open(
    { id: 'vm-test', driver: 'file', disks: Object.entries(disks).map(([name, path]) => ({ name, path })) },
    { jobId: randomUUID() },
  );
}

/** SHA-256 of the image the digests describe, each chunk read back (and verified) from the repository. */
export async function restoredSha256(repo: Repository, digests: DigestList, size: number): Promise<string> {
  const h = createHash('sha256');
  for (let i = 0; i < digests.length; i++) {
    h.update(digests.isZeroAt(i) ? Buffer.alloc(chunkLength(size, i)) : await repo.readChunk(digests.hexAt(i)));
  }
  return h.digest('hex');
}

/** The digests of every chunk file in the repository. */
export async function storedChunks(repo: Repository): Promise<Set<string>> {
  const out = new Set<string>();
  const root = join(repo.root, 'chunks');
  for (const fan of await readdir(root)) for (const f of await readdir(join(root, fan))) out.add(f);
  return out;
}

/** OS threads of this process; a worker thread is one of them. */
export function osThreads(): number {
  return readdirSync('/proc/self/task').length;
}

/** Peak RSS (VmHWM) in bytes since the last resetPeakRss(). */
export function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (!m) throw new Error('no VmHWM in /proc/self/status');
  return Number(m[1]) * 1024;
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs). */
export async function resetPeakRss(): Promise<void> {
  const fh = await open('/proc/self/clear_refs', 'w');
  try {
    await fh.write('5');
  } finally {
    await fh.close();
  }
}

/** Test double of a driver's view: delegates to a real view, with overrides. */
export function viewWith(base: DiskView, overrides: Partial<DiskView>): DiskView {
  return {
    name: base.name,
    sizeBytes: base.sizeBytes,
    fullReadReason: base.fullReadReason,
    nextBitmap: base.nextBitmap,
    allocation: () => base.allocation(),
    changed: () => base.changed(),
    read: (offset, length) => base.read(offset, length),
    ...overrides,
  };
}
