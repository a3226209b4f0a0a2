import type { Stats } from 'node:fs';
import { lstat, readdir, rename, rm, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { listIndexPaths } from './backup-commit.js';
import { forEachBounded } from './bounded-parallel.js';
import { DIGEST_BYTES, isDigestHex } from '../../shared/chunk/digest.js';
import { DigestSet } from './digest-set.js';
import { hasErrno, invalidArgument, RepositoryError, throwIfAborted } from './errors.js';
import { readIndex } from './index-format.js';
import { CHUNK_DIR_NAMES, type RepositoryLayout } from './repository-layout.js';

export interface GcProgress {
  phase: 'mark' | 'sweep';
  /** Mark: live indexes read. Sweep: chunk directories (of 256) scanned. */
  done: number;
  total: number;
}

export interface GcOptions {
  /** Every index of every backup the database holds, plus the parents of backups in flight. */
  liveIndexPaths: readonly string[];
  /** Unreferenced chunks and temp files younger than this (by mtime, against `now`) are kept. */
  graceMs: number;
  /** Start of this run; default the current time. Chunks touched after now − grace are kept. */
  now?: Date;
  onProgress?: (progress: GcProgress) => void;
  signal?: AbortSignal;
  /**
   * With no live index, every chunk past the grace goes. If published indexes exist that is more
   * likely a bug upstream than the truth, so it is refused unless this is set.
   */
  allowEmptyLiveSet?: boolean;
}

export interface GcResult {
  liveIndexes: number;
  /** Distinct chunks the live indexes name. */
  markedChunks: number;
  /** Chunk files seen by the sweep. */
  scannedChunks: number;
  removedChunks: number;
  /** Bytes of the removed chunk files (stored size, as on disk). */
  removedBytes: number;
  /** Unreferenced chunks kept because they were written or touched within the grace. */
  keptFresh: number;
  removedTempFiles: number;
  removedTempBytes: number;
  removedStagingDirs: number;
  /** Chunks moved back from gc-trash/, left there by a collector that crashed mid-delete. */
  restoredFromTrash: number;
  /** Published index files that are not live: a crash between publish and the database commit, or a bug. */
  unreferencedIndexPaths: string[];
  /** Entries under chunks/ and tmp/ that the repository did not create (left alone; first 100). */
  unknownEntries: string[];
}

const SWEEP_CONCURRENCY = 16;
const UNKNOWN_LISTED = 100;

/**
 * Mark and sweep (FORMAT.md §7). Mark: every digest named by a live index goes into a DigestSet;
 * any live index that cannot be read aborts the run before anything is deleted. Sweep: each chunk
 * file not marked and with mtime before `now − grace` is deleted, by first renaming it into
 * gc-trash/ and re-checking its mtime there: a commit or upload that touched the chunk before the
 * rename is seen (the chunk goes back), one after it finds the chunk missing and fails rather
 * than commit a backup naming a deleted chunk. A marked chunk is never renamed or deleted.
 * Also removes temp files and abandoned staging directories past the grace.
 * Run one collector per repository at a time (the hub holds a lock for it).
 */
export async function collectGarbage(layout: RepositoryLayout, opts: GcOptions): Promise<GcResult> {
  const now = opts.now ?? new Date();
  if (!Number.isFinite(opts.graceMs) || opts.graceMs < 0) throw invalidArgument('graceMs', `graceMs must be >= 0, got ${opts.graceMs}`);
  if (!Number.isFinite(now.getTime())) throw invalidArgument('now', 'now is not a valid date');
  const cutoff = now.getTime() - opts.graceMs;
  const published = await listIndexPaths(layout);
  if (opts.liveIndexPaths.length === 0 && published.length > 0 && !opts.allowEmptyLiveSet) {
    throw invalidArgument('liveIndexPaths', `no live index given, but ${published.length} published index file(s) exist; refusing to sweep`);
  }

  const result: GcResult = {
    liveIndexes: opts.liveIndexPaths.length,
    markedChunks: 0,
    scannedChunks: 0,
    removedChunks: 0,
    removedBytes: 0,
    keptFresh: 0,
    removedTempFiles: 0,
    removedTempBytes: 0,
    removedStagingDirs: 0,
    restoredFromTrash: await restoreTrash(layout),
    unreferencedIndexPaths: [],
    unknownEntries: [],
  };
  const unknown = (path: string): void => {
    if (result.unknownEntries.length < UNKNOWN_LISTED) result.unknownEntries.push(path);
  };

  // Mark. Read errors propagate: sweeping without a live index's marks would delete its chunks.
  const marked = new DigestSet();
  for (const [n, path] of opts.liveIndexPaths.entries()) {
    throwIfAborted(opts.signal);
    const index = await readIndex(path);
    for (let i = 0; i < index.digests.length; i++) {
      if (!index.digests.isZeroAt(i)) marked.add(index.digests.bytes, i * DIGEST_BYTES);
    }
    opts.onProgress?.({ phase: 'mark', done: n + 1, total: opts.liveIndexPaths.length });
  }
  result.markedChunks = marked.size;

  // Sweep chunks.
  for (const [n, dirName] of CHUNK_DIR_NAMES.entries()) {
    throwIfAborted(opts.signal);
    const dir = join(layout.chunksDir, dirName);
    const names = await readdir(dir);
    await forEachBounded(
      names,
      SWEEP_CONCURRENCY,
      async (name) => {
        if (!isDigestHex(name) || !name.startsWith(dirName)) return unknown(join(dir, name));
        result.scannedChunks++;
        if (marked.has(Buffer.from(name, 'hex'))) return;
        const seen = await lstatOrUndefined(layout.chunkPath(name));
        if (!seen) return;
        const removed = seen.mtimeMs < cutoff ? await removeStaleChunk(layout, name, cutoff) : undefined;
        if (removed === undefined) result.keptFresh++;
        else if (removed > 0) {
          result.removedChunks++;
          result.removedBytes += removed;
        }
      },
      opts.signal,
    );
    opts.onProgress?.({ phase: 'sweep', done: n + 1, total: CHUNK_DIR_NAMES.length });
  }

  // Temp files of writes that died, and staging directories of commits that died.
  for (const name of await readdir(layout.tmpDir)) {
    const path = join(layout.tmpDir, name);
    if (!name.endsWith('.tmp')) {
      unknown(path);
      continue;
    }
    const st = await lstatOrUndefined(path);
    if (st && st.mtimeMs < cutoff) {
      await rm(path, { force: true });
      result.removedTempFiles++;
      result.removedTempBytes += st.size;
    }
  }
  for (const name of await readdir(layout.stagingDir)) {
    const path = join(layout.stagingDir, name);
    const st = await lstatOrUndefined(path);
    if (st && st.mtimeMs < cutoff) {
      await rm(path, { recursive: true, force: true });
      result.removedStagingDirs++;
    }
  }

  const live = new Set(opts.liveIndexPaths.map((p) => resolve(p)));
  result.unreferencedIndexPaths = published.filter((p) => !live.has(p));
  return result;
}

/**
 * Deletes an unmarked chunk the sweep saw with mtime before `cutoff`. It may have been touched
 * since (a commit or upload relying on it), so the chunk is first renamed into gc-trash/, where
 * nobody can touch it any more, and its mtime checked again: if touched, it goes back. Returns
 * its size if deleted, 0 if it vanished meanwhile, undefined if it was kept.
 */
export async function removeStaleChunk(layout: RepositoryLayout, digest: string, cutoff: number): Promise<number | undefined> {
  const path = layout.chunkPath(digest);
  const trash = layout.trashPath(digest);
  try {
    await rename(path, trash);
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return 0;
    throw err;
  }
  const after = await lstatOrUndefined(trash);
  if (!after) return 0;
  if (after.mtimeMs >= cutoff) {
    await rename(trash, path);
    return undefined;
  }
  await unlink(trash);
  return after.size;
}

/**
 * Moves back every chunk a crashed collector left in gc-trash/. Some commit may have touched it
 * just before the rename, and moving back is always safe (the next run reconsiders it).
 * Called at the start of every run and when a repository is opened.
 */
export async function restoreTrash(layout: RepositoryLayout): Promise<number> {
  let restored = 0;
  for (const name of await readdir(layout.trashDir)) {
    const from = join(layout.trashDir, name);
    if (!isDigestHex(name)) {
      throw new RepositoryError('REPOSITORY_INVALID', `unexpected entry ${from} in the GC trash; remove it by hand`, {
        root: layout.root,
        reason: 'foreign file in gc-trash',
      });
    }
    await rename(from, layout.chunkPath(name));
    restored++;
  }
  return restored;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}
