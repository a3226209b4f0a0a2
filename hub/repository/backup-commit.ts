import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { assertDiskSize, chunkCount, chunkLength, zeroChunkDigest } from '../../shared/chunk/geometry.js';
import type { ChunkStore } from './chunk-store.js';
import { DIGEST_BYTES, DigestList } from '../../shared/chunk/digest.js';
import { DigestSet } from './digest-set.js';
import { fsyncDirectory } from './durable-file.js';
import { hasErrno, invalidArgument, RepositoryError, throwIfAborted } from './errors.js';
import { writeIndex } from './index-format.js';
import { assertId, INDEX_FILE_SUFFIX, type RepositoryLayout } from './repository-layout.js';

/**
 * Committing a backup (FORMAT.md §6). The hub's database row is the fact that a backup exists; the
 * repository's job is to make sure that, when the row commits, the index files are durable and
 * every chunk they name is present. The sequence, each step safe to crash in:
 *
 *   const staged = await stageBackup(...)     // checks + touches chunks, writes indexes durably
 *   await publishBackup(staged)               // one atomic rename into indexes/
 *   try { insert the row; COMMIT } catch (e) { if surely not committed: await discardBackup(id) }
 *
 * A crash before publish leaves a staging directory (GC removes it after the grace); a crash
 * between publish and COMMIT leaves an index the database does not know (listed by GC as
 * unreferenced; discardBackup removes it). If COMMIT's outcome is unknown (connection lost during
 * it), check the row before discarding: discarding a committed backup's indexes destroys it.
 */

export interface DiskDigests {
  /** Names the index file: [A-Za-z0-9][A-Za-z0-9_.-]{0,127}, unique within the backup. */
  diskId: string;
  diskSize: number;
  /** ceil(diskSize / 4 MiB) digests in disk order; all-zero, or the hash of zeros, for zero chunks. */
  digests: DigestList;
}

export interface StageBackupRequest {
  /** Names the backup's index directory; same character rules as diskId. */
  backupId: string;
  createdAt: Date;
  disks: readonly DiskDigests[];
  signal?: AbortSignal;
}

export interface CommittedDisk {
  diskId: string;
  diskSize: number;
  chunkCount: number;
  zeroChunks: number;
  /** Absolute path of the index once published. */
  indexPath: string;
  /** The same, relative to the repository root ("indexes/<backup>/<disk>.bhidx"), for the database. */
  relativePath: string;
}

export interface StagedBackup {
  readonly backupId: string;
  readonly stagingDir: string;
  readonly disks: readonly CommittedDisk[];
  /** Distinct non-zero chunks the backup names; all were present and touched at staging. */
  readonly distinctChunks: number;
}

/** At most this many missing digests are listed in a CHUNK_MISSING error (the count is exact). */
const MISSING_LISTED = 100;

/**
 * Verifies every non-zero chunk the disks name is in the store (touching each, so a concurrent GC
 * keeps it), then writes one index per disk durably into a private staging directory. Throws
 * CHUNK_MISSING (listing up to 100, with the exact count) and writes nothing if any is absent;
 * BACKUP_EXISTS if the backup is already published. Digests equal to the hash of an all-zero chunk
 * are rewritten to the zero marker. The caller's digest lists are not modified.
 */
export async function stageBackup(layout: RepositoryLayout, store: ChunkStore, req: StageBackupRequest): Promise<StagedBackup> {
  assertId(req.backupId, 'backupId');
  if (req.disks.length === 0) throw invalidArgument('disks', 'a backup needs at least one disk');
  const seenDisks = new Set<string>();
  for (const disk of req.disks) {
    assertId(disk.diskId, 'diskId');
    if (seenDisks.has(disk.diskId)) throw invalidArgument('diskId', `disk ${disk.diskId} appears twice`);
    seenDisks.add(disk.diskId);
    assertDiskSize(disk.diskSize, `diskSize of ${disk.diskId}`);
    const n = chunkCount(disk.diskSize);
    if (disk.digests.length !== n) {
      throw invalidArgument('digests', `disk ${disk.diskId} of ${disk.diskSize} bytes has ${n} chunks, got ${disk.digests.length} digests`);
    }
  }
  if (await isDirectory(layout.backupDir(req.backupId))) {
    throw new RepositoryError('BACKUP_EXISTS', `backup ${req.backupId} is already published`, { backupId: req.backupId });
  }

  const normalised = req.disks.map((disk) => ({ ...disk, ...normaliseZeros(disk) }));
  throwIfAborted(req.signal);

  const distinct = new DigestSet();
  const missing: string[] = [];
  let missingCount = 0;
  function* toCheck(): Generator<string> {
    for (const disk of normalised) {
      for (let i = 0; i < disk.digests.length; i++) {
        if (disk.digests.isZeroAt(i)) continue;
        if (distinct.add(disk.digests.bytes, i * DIGEST_BYTES)) yield disk.digests.hexAt(i);
      }
    }
  }
  await store.touchChunks(
    toCheck(),
    (digest) => {
      missingCount++;
      if (missing.length < MISSING_LISTED) missing.push(digest);
    },
    req.signal,
  );
  if (missingCount > 0) {
    throw new RepositoryError(
      'CHUNK_MISSING',
      `backup ${req.backupId} names ${missingCount} chunk(s) the repository lacks, e.g. ${missing[0]}`,
      { digests: missing.sort(), count: missingCount },
    );
  }

  const stagingDir = layout.newStagingDir(req.backupId);
  await mkdir(stagingDir);
  try {
    for (const disk of normalised) {
      throwIfAborted(req.signal);
      await writeIndex(join(stagingDir, disk.diskId + INDEX_FILE_SUFFIX), {
        diskSize: disk.diskSize,
        createdAt: req.createdAt,
        digests: disk.digests,
      });
    }
    await fsyncDirectory(layout.stagingDir);
  } catch (err) {
    await rm(stagingDir, { recursive: true, force: true });
    throw err;
  }
  return {
    backupId: req.backupId,
    stagingDir,
    distinctChunks: distinct.size,
    disks: normalised.map((d) => ({
      diskId: d.diskId,
      diskSize: d.diskSize,
      chunkCount: d.digests.length,
      zeroChunks: d.zeroChunks,
      indexPath: layout.indexPath(req.backupId, d.diskId),
      relativePath: layout.relativeIndexPath(req.backupId, d.diskId),
    })),
  };
}

/** A copy of the disk's digests with every zero chunk as the all-zero marker. */
function normaliseZeros(disk: DiskDigests): { digests: DigestList; zeroChunks: number } {
  const digests = DigestList.fromBytes(Buffer.from(disk.digests.bytes));
  let zeroChunks = 0;
  for (let i = 0; i < digests.length; i++) {
    if (digests.isZeroAt(i)) {
      zeroChunks++;
    } else if (digests.bytesAt(i).equals(zeroChunkDigest(chunkLength(disk.diskSize, i)))) {
      digests.setZeroAt(i);
      zeroChunks++;
    }
  }
  return { digests, zeroChunks };
}

/**
 * Moves a staged backup into indexes/<backupId> with one rename, then fsyncs both parents. The
 * backup's index paths (in `staged.disks`) are valid from here on. BACKUP_EXISTS if another copy
 * was published first; BACKUP_NOT_STAGED if the staging directory is gone (discarded or GC'd).
 */
export async function publishBackup(layout: RepositoryLayout, staged: StagedBackup): Promise<void> {
  try {
    await rename(staged.stagingDir, layout.backupDir(staged.backupId));
  } catch (err) {
    if (hasErrno(err, 'ENOTEMPTY') || hasErrno(err, 'EEXIST')) {
      throw new RepositoryError('BACKUP_EXISTS', `backup ${staged.backupId} is already published`, { backupId: staged.backupId }, { cause: err });
    }
    if (hasErrno(err, 'ENOENT')) {
      throw new RepositoryError('BACKUP_NOT_STAGED', `backup ${staged.backupId} has no staged copy at ${staged.stagingDir}`, { backupId: staged.backupId }, { cause: err });
    }
    throw err;
  }
  await fsyncDirectory(layout.indexesDir);
  await fsyncDirectory(layout.stagingDir);
}

/**
 * Removes a backup's index files, published and staged: after a failed commit, a cancel, or when
 * prune removes the backup. Its chunks stay until the garbage collector finds them unreferenced.
 * Idempotent.
 */
export async function discardBackup(layout: RepositoryLayout, backupId: string): Promise<{ published: boolean; staged: number }> {
  assertId(backupId, 'backupId');
  const published = await isDirectory(layout.backupDir(backupId));
  if (published) {
    await rm(layout.backupDir(backupId), { recursive: true, force: true });
    await fsyncDirectory(layout.indexesDir);
  }
  const staging = (await readdir(layout.stagingDir)).filter((name) => layout.isStagingOf(name, backupId));
  for (const name of staging) await rm(join(layout.stagingDir, name), { recursive: true, force: true });
  if (staging.length > 0) await fsyncDirectory(layout.stagingDir);
  return { published, staged: staging.length };
}

/** The ids of all published backups, sorted. */
export async function listBackups(layout: RepositoryLayout): Promise<string[]> {
  const entries = await readdir(layout.indexesDir, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
}

/** Absolute paths of every published index file, sorted. */
export async function listIndexPaths(layout: RepositoryLayout): Promise<string[]> {
  const paths: string[] = [];
  for (const backupId of await listBackups(layout)) {
    const dir = layout.backupDir(backupId);
    for (const name of await readdir(dir)) {
      if (name.endsWith(INDEX_FILE_SUFFIX)) paths.push(join(dir, name));
    }
  }
  return paths.sort();
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return false;
    throw err;
  }
}
