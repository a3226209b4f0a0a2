/** The repository's public surface; FORMAT.md beside this file specifies what it writes. */
export { Repository, type RepositoryOptions } from './repository.js';
export { ChunkStore, type PutChunkOptions, type PutChunkResult } from './chunk-store.js';
export { ChunkStoreWorkers, type ChunkStoreWorkersOptions } from './chunk-store-workers.js';
export { RepositoryLayout, INDEX_FILE_SUFFIX } from './repository-layout.js';
export {
  stageBackup,
  publishBackup,
  discardBackup,
  listBackups,
  listIndexPaths,
  type DiskDigests,
  type StageBackupRequest,
  type StagedBackup,
  type CommittedDisk,
} from './backup-commit.js';
export { readIndex, writeIndex, encodeIndex, decodeIndex, type DiskIndex, type DiskIndexInput } from './index-format.js';
export { verifyBackup, type VerifyOptions, type VerifyProgress, type VerifyResult, type BadChunk, type BadIndex, type ChunkLocation } from './verify.js';
export { collectGarbage, restoreTrash, type GcOptions, type GcProgress, type GcResult } from './garbage-collector.js';
export { selectForPrune, isoWeek, type PruneCandidate, type PrunePolicy, type PruneDecision, type KeepReason, type KeepRule } from './prune-policy.js';
export { CHUNK_SIZE, chunkCount, chunkLength, chunkOffset, zeroChunkDigest } from '../../shared/chunk/geometry.js';
export { DigestList, ZERO_DIGEST_HEX, DIGEST_BYTES, sha256, isDigestHex, assertDigestHex } from '../../shared/chunk/digest.js';
export { DigestSet } from './digest-set.js';
export { type ChunkEncoding, CHUNK_HEADER_BYTES } from './chunk-file-format.js';
export { zstdCompress } from '../../shared/chunk/zstd.js';
export {
  RepositoryError,
  isRepositoryError,
  type RepositoryErrorCode,
  type RepositoryErrorDetails,
  type DataLossReason,
  type IndexCorruptReason,
} from './errors.js';
