import { forEachBounded } from './bounded-parallel.js';
import { chunkLength, chunkOffset } from '../../shared/chunk/geometry.js';
import type { ChunkStore } from './chunk-store.js';
import { DIGEST_BYTES } from '../../shared/chunk/digest.js';
import { DigestSet } from './digest-set.js';
import { isRepositoryError, throwIfAborted, type DataLossReason } from './errors.js';
import { readIndex, type DiskIndex } from './index-format.js';

export interface ChunkLocation {
  indexPath: string;
  chunkIndex: number;
  /** Byte offset of the chunk in the disk image. */
  offset: number;
}

export interface BadChunk {
  digest: string;
  problem: 'missing' | DataLossReason;
  /** The first 100 places the chunk is used; `locationCount` counts them all. */
  locations: ChunkLocation[];
  locationCount: number;
}

export interface BadIndex {
  indexPath: string;
  code: 'INDEX_CORRUPT' | 'INDEX_NOT_FOUND';
  message: string;
}

export interface VerifyProgress {
  bytesDone: number;
  bytesTotal: number;
  chunksDone: number;
  chunksTotal: number;
}

export interface VerifyOptions {
  onProgress?: (progress: VerifyProgress) => void;
  signal?: AbortSignal;
  /** Chunks read at once; 2 overlaps one read with one decode+hash. */
  concurrency?: number;
}

export interface VerifyResult {
  /** True when every index is valid and every chunk they name is present and intact. */
  ok: boolean;
  indexesChecked: number;
  /** Distinct non-zero chunks read, decoded and hashed. */
  chunksChecked: number;
  /** Their plaintext bytes. */
  bytesChecked: number;
  corrupt: BadChunk[];
  missing: BadChunk[];
  badIndexes: BadIndex[];
}

const LOCATIONS_KEPT = 100;

/**
 * Re-reads every chunk the given indexes name, each distinct digest once, verifying each against
 * its digest (ChunkStore.readChunk). Reports the corrupt and missing chunks with the disks (index
 * paths) and offsets they break, and the indexes that cannot be read. Holds one index at a time;
 * a first pass over the indexes sizes the work so progress is in real bytes.
 * I/O errors other than a missing or damaged chunk or index abort it (they say nothing about the data).
 */
export async function verifyBackup(store: ChunkStore, indexPaths: readonly string[], opts: VerifyOptions = {}): Promise<VerifyResult> {
  const badIndexes: BadIndex[] = [];
  const badIndexPaths = new Set<string>();
  const load = async (path: string): Promise<DiskIndex | undefined> => {
    throwIfAborted(opts.signal);
    try {
      return await readIndex(path);
    } catch (err) {
      if (isRepositoryError(err, 'INDEX_CORRUPT') || isRepositoryError(err, 'INDEX_NOT_FOUND')) {
        if (!badIndexPaths.has(path)) badIndexes.push({ indexPath: path, code: err.code, message: err.message });
        badIndexPaths.add(path);
        return undefined;
      }
      throw err;
    }
  };

  // Pass 1: size the work.
  const planned = new DigestSet();
  const progress: VerifyProgress = { bytesDone: 0, bytesTotal: 0, chunksDone: 0, chunksTotal: 0 };
  for (const path of indexPaths) {
    const index = await load(path);
    if (!index) continue;
    forEachStored(index, (i) => {
      if (planned.add(index.digests.bytes, i * DIGEST_BYTES)) {
        progress.chunksTotal++;
        progress.bytesTotal += chunkLength(index.diskSize, i);
      }
    });
  }
  opts.onProgress?.({ ...progress });

  // Pass 2: read each distinct chunk once; record where the bad ones are used.
  const verified = new DigestSet(planned.size);
  const bad = new Map<string, BadChunk>();
  let indexesChecked = 0;
  for (const path of indexPaths) {
    if (badIndexPaths.has(path)) continue;
    const index = await load(path);
    if (!index) continue;
    indexesChecked++;
    await forEachBounded(
      firstSeen(index, verified),
      opts.concurrency ?? 2,
      async (i) => {
        const digest = index.digests.hexAt(i);
        const problem = await checkChunk(store, digest);
        if (problem) bad.set(digest, { digest, problem, locations: [], locationCount: 0 });
        progress.chunksDone++;
        progress.bytesDone += chunkLength(index.diskSize, i);
        opts.onProgress?.({ ...progress });
      },
      opts.signal,
    );
    if (bad.size > 0) {
      forEachStored(index, (i) => {
        const entry = bad.get(index.digests.hexAt(i));
        if (!entry) return;
        entry.locationCount++;
        if (entry.locations.length < LOCATIONS_KEPT) entry.locations.push({ indexPath: path, chunkIndex: i, offset: chunkOffset(i) });
      });
    }
  }

  const all = [...bad.values()].sort((a, b) => a.digest.localeCompare(b.digest));
  const corrupt = all.filter((b) => b.problem !== 'missing');
  const missing = all.filter((b) => b.problem === 'missing');
  return {
    ok: corrupt.length === 0 && missing.length === 0 && badIndexes.length === 0,
    indexesChecked,
    chunksChecked: progress.chunksDone,
    bytesChecked: progress.bytesDone,
    corrupt,
    missing,
    badIndexes,
  };
}

/** Positions of the index's non-zero chunks whose digest `seen` did not hold yet (adding them). */
function* firstSeen(index: DiskIndex, seen: DigestSet): Generator<number> {
  for (let i = 0; i < index.digests.length; i++) {
    if (!index.digests.isZeroAt(i) && seen.add(index.digests.bytes, i * DIGEST_BYTES)) yield i;
  }
}

function forEachStored(index: DiskIndex, fn: (i: number) => void): void {
  for (let i = 0; i < index.digests.length; i++) if (!index.digests.isZeroAt(i)) fn(i);
}

async function checkChunk(store: ChunkStore, digest: string): Promise<BadChunk['problem'] | undefined> {
  try {
    // Checked, not kept: the pooled buffer goes straight back instead of a copy being made.
    (await store.readVerified(digest)).release();
    return undefined;
  } catch (err) {
    if (isRepositoryError(err, 'CHUNK_MISSING')) return 'missing';
    if (isRepositoryError(err, 'DATA_LOSS')) return err.details.reason;
    throw err;
  }
}
