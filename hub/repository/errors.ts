/**
 * Errors the repository raises on purpose. Each has a stable code; callers match on the code (and
 * the typed details), never on the message. The repository knows nothing of gRPC: the hub maps codes
 * to statuses (suggested: DATA_LOSS, INDEX_CORRUPT → DATA_LOSS; CHUNK_MISSING, BACKUP_NOT_STAGED →
 * FAILED_PRECONDITION; INDEX_NOT_FOUND → NOT_FOUND; BACKUP_EXISTS → ALREADY_EXISTS;
 * INVALID_ARGUMENT → INVALID_ARGUMENT; REPOSITORY_INVALID → FAILED_PRECONDITION; ABORTED → CANCELLED).
 */

/** Why chunk bytes were refused or found bad. */
export type DataLossReason =
  /** The plaintext does not hash to the digest it is stored or uploaded under. */
  | 'digest-mismatch'
  /** The plaintext is longer than a chunk may be (4 MiB), or empty. */
  | 'bad-length'
  /** The compressed bytes are not a valid zstd stream, or decode to another length than recorded. */
  | 'undecodable'
  /** The chunk file's header is bad: magic, version, encoding, reserved bits or header CRC. */
  | 'bad-header'
  /** The storage failed to read the file (EIO). */
  | 'unreadable';

/** Why an index file was refused. */
export type IndexCorruptReason =
  | 'truncated'
  | 'bad-magic'
  | 'unsupported-version'
  | 'checksum-mismatch'
  | 'bad-header'
  | 'bad-length'
  | 'unreadable';

export interface RepositoryErrorDetails {
  /** Chunk bytes do not match their name (upload or on disk), or a chunk file cannot be decoded. */
  DATA_LOSS: { digest: string; reason: DataLossReason };
  /** Chunks named by an index (or asked for) are not in the store. `digests` holds at most 100. */
  CHUNK_MISSING: { digests: string[]; count: number };
  /** An index file fails validation; nothing in it may be trusted. */
  INDEX_CORRUPT: { path: string; reason: IndexCorruptReason };
  /** An index file that should exist does not. */
  INDEX_NOT_FOUND: { path: string };
  /** A backup with this id is already published; it is never overwritten. */
  BACKUP_EXISTS: { backupId: string };
  /** publish() was called for a backup that has no complete staged copy. */
  BACKUP_NOT_STAGED: { backupId: string };
  /** The repository root is missing its marker, or has a format version this code cannot handle. */
  REPOSITORY_INVALID: { root: string; reason: string };
  /** The caller passed something malformed: a digest, an id, a size, a policy. */
  INVALID_ARGUMENT: { argument: string };
  /** The operation was cancelled through its AbortSignal; what was done stays consistent. */
  ABORTED: Record<string, never>;
}

export type RepositoryErrorCode = keyof RepositoryErrorDetails;

export class RepositoryError<C extends RepositoryErrorCode = RepositoryErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    readonly details: RepositoryErrorDetails[C],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'RepositoryError';
  }
}

export function isRepositoryError<C extends RepositoryErrorCode>(
  err: unknown,
  code: C,
): err is RepositoryError<C> {
  return err instanceof RepositoryError && err.code === code;
}

export function invalidArgument(argument: string, message: string): RepositoryError<'INVALID_ARGUMENT'> {
  return new RepositoryError('INVALID_ARGUMENT', message, { argument });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new RepositoryError('ABORTED', 'operation cancelled', {}, { cause: signal.reason });
}

/** True for a Node.js system error with the given errno code (ENOENT, EEXIST, ...). */
export function hasErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
