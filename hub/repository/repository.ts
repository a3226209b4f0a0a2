import { join } from 'node:path';
import {
  discardBackup,
  listBackups,
  publishBackup,
  stageBackup,
  type StageBackupRequest,
  type StagedBackup,
} from './backup-commit.js';
import type { ChunkEncoding } from './chunk-file-format.js';
import type { ReadChunk } from './chunk-reads.js';
import { ChunkStore, type PutChunkOptions, type PutChunkResult } from './chunk-store.js';
import type { ChunkStoreWorkers } from './chunk-store-workers.js';
import { invalidArgument } from './errors.js';
import { collectGarbage, restoreTrash, type GcOptions, type GcResult } from './garbage-collector.js';
import { readIndex, type DiskIndex } from './index-format.js';
import { assertId, INDEX_FILE_SUFFIX, RepositoryLayout } from './repository-layout.js';
import { verifyBackup, type VerifyOptions, type VerifyResult } from './verify.js';

export interface RepositoryOptions {
  /** Threads that check and write uploaded chunks; without, putChunk does it on the caller's thread. The caller closes them. */
  workers?: ChunkStoreWorkers;
}

/**
 * The hub's repository: one object per repository root, tying the chunk store, the commit of
 * backups, verify and garbage collection together. Every method is safe to call concurrently
 * with the others, except that only one collectGarbage may run per repository at a time.
 */
export class Repository {
  private constructor(
    readonly layout: RepositoryLayout,
    readonly chunks: ChunkStore,
  ) {}

  /** Creates the repository at `root` if it does not exist (idempotent), then opens it. */
  static async create(root: string, opts: RepositoryOptions = {}): Promise<Repository> {
    return Repository.from(await RepositoryLayout.create(root), opts);
  }

  /** Opens an existing repository; REPOSITORY_INVALID if `root` is not one this code understands. */
  static async open(root: string, opts: RepositoryOptions = {}): Promise<Repository> {
    return Repository.from(await RepositoryLayout.open(root), opts);
  }

  private static async from(layout: RepositoryLayout, opts: RepositoryOptions): Promise<Repository> {
    // A collector that crashed mid-delete may have left chunks in gc-trash/: put them back first.
    await restoreTrash(layout);
    return new Repository(layout, new ChunkStore(layout, opts.workers));
  }

  get root(): string {
    return this.layout.root;
  }

  putChunk(digest: string, payload: Buffer, encoding: ChunkEncoding = 'zstd', opts?: PutChunkOptions): Promise<PutChunkResult> {
    return this.chunks.putChunk(digest, payload, encoding, opts);
  }

  missingChunks(digests: readonly string[], signal?: AbortSignal): Promise<string[]> {
    return this.chunks.missingChunks(digests, signal);
  }

  hasChunk(digest: string): Promise<boolean> {
    return this.chunks.hasChunk(digest);
  }

  readChunk(digest: string): Promise<Buffer> {
    return this.chunks.readChunk(digest);
  }

  /** readChunk into a pooled buffer, with headroom for a message header; release() it when sent. */
  readVerified(digest: string): Promise<ReadChunk> {
    return this.chunks.readVerified(digest);
  }

  /** For restores: see ChunkStore.readDecoded. */
  readDecoded(digest: string): Promise<ReadChunk> {
    return this.chunks.readDecoded(digest);
  }

  stageBackup(req: StageBackupRequest): Promise<StagedBackup> {
    return stageBackup(this.layout, this.chunks, req);
  }

  publishBackup(staged: StagedBackup): Promise<void> {
    return publishBackup(this.layout, staged);
  }

  discardBackup(backupId: string): Promise<{ published: boolean; staged: number }> {
    return discardBackup(this.layout, backupId);
  }

  listBackups(): Promise<string[]> {
    return listBackups(this.layout);
  }

  indexPath(backupId: string, diskId: string): string {
    assertId(backupId, 'backupId');
    assertId(diskId, 'diskId');
    return this.layout.indexPath(backupId, diskId);
  }

  /** The absolute path of a relative index path as stored in the database ("indexes/<b>/<d>.bhidx"). */
  resolveIndexPath(relativePath: string): string {
    const parts = relativePath.split('/');
    if (parts.length !== 3 || parts[0] !== 'indexes' || !parts[2].endsWith(INDEX_FILE_SUFFIX)) {
      throw invalidArgument('relativePath', `not an index path: ${JSON.stringify(relativePath)}`);
    }
    assertId(parts[1], 'backupId');
    assertId(parts[2].slice(0, -INDEX_FILE_SUFFIX.length), 'diskId');
    return join(this.layout.root, ...parts);
  }

  readIndex(path: string): Promise<DiskIndex> {
    return readIndex(path);
  }

  verifyBackup(indexPaths: readonly string[], opts?: VerifyOptions): Promise<VerifyResult> {
    return verifyBackup(this.chunks, indexPaths, opts);
  }

  collectGarbage(opts: GcOptions): Promise<GcResult> {
    return collectGarbage(this.layout, opts);
  }
}
