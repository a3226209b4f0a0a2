import { checkUploadSync, CHUNK_HEADER_BYTES, encodeChunkHeader, type ChunkEncoding } from './chunk-file-format.js';
import { writeFileDurablySync } from './durable-file.js';

/** Where an upload goes: its name, its encoding, and the paths the chunk store chose for it. */
export interface ChunkUploadTarget {
  digest: string;
  encoding: ChunkEncoding;
  /** A fresh temp file under tmp/ (RepositoryLayout.tempPath('chunk')). */
  tmpPath: string;
  /** chunks/ab/<digest> (RepositoryLayout.chunkPath). */
  finalPath: string;
}

export interface StoredChunk {
  plaintextBytes: number;
  storedBytes: number;
}

/**
 * Stores one uploaded chunk (FORMAT.md §3, steps 3-5): checks it (checkUploadSync: decode bounded
 * to 4 MiB, length, SHA-256 against the digest; DATA_LOSS writes nothing), then writes header +
 * payload durably: temp file, fsync, rename to its name, fsync of the directory. Synchronous, on
 * whatever thread calls it: the hub's chunk store workers, or the caller's own thread when the
 * repository has none. The one implementation of both paths.
 */
export function storeUploadSync(target: ChunkUploadTarget, payload: Buffer): StoredChunk {
  const plaintextBytes = checkUploadSync(target.digest, payload, target.encoding);
  const header = encodeChunkHeader(target.encoding, plaintextBytes);
  writeFileDurablySync(target.tmpPath, target.finalPath, [header, payload]);
  return { plaintextBytes, storedBytes: CHUNK_HEADER_BYTES + payload.length };
}
