import { randomBytes } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { fsyncDirectory, writeFileDurably } from './durable-file.js';
import { hasErrno, invalidArgument, RepositoryError } from './errors.js';

/** The marker file; its presence means the layout below is complete (FORMAT.md §2). */
export const REPOSITORY_MARKER = 'repository.json';
export const REPOSITORY_FORMAT = 'backhaul-repository';
export const REPOSITORY_VERSION = 1;
export const INDEX_FILE_SUFFIX = '.bhidx';
/** Separates a backup id from the random part of its staging directory; ids cannot contain it. */
const STAGING_SEPARATOR = '~';

const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Backup and disk ids become path components: one safe spelling, no separators, no dot-names. */
export function assertId(value: string, argument: string): void {
  if (!ID.test(value)) {
    throw invalidArgument(argument, `${argument} must match ${ID.source}, got ${JSON.stringify(value.slice(0, 140))}`);
  }
}

/** The 256 fan-out directory names, "00".."ff". */
export const CHUNK_DIR_NAMES: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * Where everything lives under a repository root:
 *
 *   repository.json           marker: format, version, chunk size
 *   chunks/ab/<digest>        chunk files, fanned out by the digest's first byte
 *   indexes/<backup>/<disk>.bhidx   published index files, one directory per backup
 *   staging/<backup>~<rand>/  index files of a backup being committed
 *   tmp/                      temp files of writes in progress
 *   gc-trash/<digest>         a chunk the garbage collector is deleting (moved back if it crashes)
 */
export class RepositoryLayout {
  readonly root: string;
  readonly chunksDir: string;
  readonly indexesDir: string;
  readonly stagingDir: string;
  readonly tmpDir: string;
  readonly trashDir: string;

  private constructor(root: string) {
    this.root = resolve(root);
    this.chunksDir = join(this.root, 'chunks');
    this.indexesDir = join(this.root, 'indexes');
    this.stagingDir = join(this.root, 'staging');
    this.tmpDir = join(this.root, 'tmp');
    this.trashDir = join(this.root, 'gc-trash');
  }

  /** Creates the layout where it is missing (idempotent), then opens it. */
  static async create(root: string): Promise<RepositoryLayout> {
    const layout = new RepositoryLayout(root);
    const marker = join(layout.root, REPOSITORY_MARKER);
    await mkdir(layout.root, { recursive: true });
    for (const dir of [layout.chunksDir, layout.indexesDir, layout.stagingDir, layout.tmpDir, layout.trashDir]) {
      await mkdir(dir, { recursive: true });
    }
    // Fan-out directories exist up front, so a chunk write never creates a directory.
    for (const name of CHUNK_DIR_NAMES) await mkdir(join(layout.chunksDir, name), { recursive: true });
    await fsyncDirectory(layout.chunksDir);
    await fsyncDirectory(layout.root);
    if (!(await exists(marker))) {
      const body = JSON.stringify({ format: REPOSITORY_FORMAT, version: REPOSITORY_VERSION, chunkSize: CHUNK_SIZE }) + '\n';
      await writeFileDurably(layout.tempPath('marker'), marker, [Buffer.from(body)]);
    }
    return RepositoryLayout.open(root);
  }

  /** Opens an existing repository; REPOSITORY_INVALID if the marker is missing or not understood. */
  static async open(root: string): Promise<RepositoryLayout> {
    const layout = new RepositoryLayout(root);
    const marker = join(layout.root, REPOSITORY_MARKER);
    let text: string;
    try {
      text = await readFile(marker, 'utf8');
    } catch (err) {
      if (hasErrno(err, 'ENOENT')) {
        throw new RepositoryError('REPOSITORY_INVALID', `${layout.root} is not a repository (no ${REPOSITORY_MARKER})`, {
          root: layout.root,
          reason: 'no marker',
        });
      }
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new RepositoryError('REPOSITORY_INVALID', `${marker} is not JSON`, { root: layout.root, reason: 'bad marker' }, { cause: err });
    }
    const m = parsed as { format?: unknown; version?: unknown; chunkSize?: unknown };
    if (m.format !== REPOSITORY_FORMAT || m.version !== REPOSITORY_VERSION || m.chunkSize !== CHUNK_SIZE) {
      throw new RepositoryError(
        'REPOSITORY_INVALID',
        `${marker}: expected ${REPOSITORY_FORMAT} version ${REPOSITORY_VERSION} with ${CHUNK_SIZE}-byte chunks, got ${text.trim()}`,
        { root: layout.root, reason: 'unsupported version' },
      );
    }
    return layout;
  }

  chunkPath(digest: string): string {
    return join(this.chunksDir, digest.slice(0, 2), digest);
  }

  trashPath(digest: string): string {
    return join(this.trashDir, digest);
  }

  /** A fresh, unique temp file path; `.tmp` marks it for the garbage collector. */
  tempPath(kind: string): string {
    return join(this.tmpDir, `${kind}-${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
  }

  backupDir(backupId: string): string {
    return join(this.indexesDir, backupId);
  }

  indexPath(backupId: string, diskId: string): string {
    return join(this.indexesDir, backupId, diskId + INDEX_FILE_SUFFIX);
  }

  /** The path relative to the root, for storing in the database (the root may move). */
  relativeIndexPath(backupId: string, diskId: string): string {
    return ['indexes', backupId, diskId + INDEX_FILE_SUFFIX].join('/');
  }

  newStagingDir(backupId: string): string {
    return join(this.stagingDir, `${backupId}${STAGING_SEPARATOR}${randomBytes(8).toString('hex')}`);
  }

  /** True if a staging directory name belongs to `backupId`. */
  isStagingOf(name: string, backupId: string): boolean {
    return name.startsWith(backupId + STAGING_SEPARATOR);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) return false;
    throw err;
  }
}
