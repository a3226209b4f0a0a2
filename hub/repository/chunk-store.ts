import { statSync, utimesSync } from 'node:fs';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { ChunkEncoding } from './chunk-file-format.js';
import { ChunkReads, type ReadChunk } from './chunk-reads.js';
import { assertDigestHex } from '../../shared/chunk/digest.js';
import type { ChunkStoreWorkers } from './chunk-store-workers.js';
import { storeUploadSync, type ChunkUploadTarget } from './chunk-upload.js';
import { hasErrno, throwIfAborted } from './errors.js';
import type { RepositoryLayout } from './repository-layout.js';

export type PutChunkResult =
  /** The chunk was checked and written durably. */
  | { created: true; plaintextBytes: number; storedBytes: number }
  /** The store already had it (its mtime was refreshed); the upload was not looked at. */
  | { created: false };

export interface PutChunkOptions {
  /**
   * The caller gives up `payload` and every other view of its memory (e.g. the other fields of
   * the gRPC message it was decoded from): the store may move that memory to a worker thread,
   * detaching it, instead of copying it. Default false.
   */
  transferPayload?: boolean;
}

/**
 * Batch lookups make their stat/utimes calls synchronously, in slices of at most this many ms,
 * yielding to the event loop between slices. Measured here: ~5-10 µs a call synchronously against
 * ~50 µs through the libuv pool (thread hand-off plus, for a missing file, an Error with a stack),
 * so 10,000 digests take ~0.1 s instead of ~0.8 s, and no other stream waits more than a slice.
 */
const SLICE_MS = 2;

/**
 * The content-addressed chunk store: one file per chunk under chunks/ab/<digest> (FORMAT.md §3).
 *
 * "Touching" a chunk sets its mtime to now. Every path that lets a backup rely on an existing chunk
 * touches it (putChunk of a known chunk, missingChunks, commit), and the garbage collector never
 * deletes a chunk touched after it started; that is what makes dedup safe against a concurrent GC.
 */
export class ChunkStore {
  private readonly reads: ChunkReads;

  /**
   * With `workers`, uploads are checked and written, and chunks read (verified or only decoded),
   * on those threads (the hub); without, on the caller's thread, synchronously (tests, tools). Both
   * run the same storeUploadSync and readChunkSync.
   */
  constructor(
    private readonly layout: RepositoryLayout,
    private readonly workers?: ChunkStoreWorkers,
  ) {
    this.reads = new ChunkReads(workers);
  }

  /** Starts the store threads that are not running, so the next stores and reads need not wait for one. */
  warmWorkers(): void {
    this.workers?.warm();
  }

  chunkPath(digest: string): string {
    assertDigestHex(digest);
    return this.layout.chunkPath(digest);
  }

  /**
   * Stores a chunk uploaded under `digest`. The payload is decoded (bounded to 4 MiB), its plaintext
   * length checked and its SHA-256 compared with `digest`; on any mismatch it throws DATA_LOSS and
   * writes nothing. The file is written temp + fsync + rename + fsync(dir). Idempotent: a chunk the
   * store has already is a no-op. `encoding: 'none'` accepts the plaintext itself (e.g. data zstd
   * cannot shrink) and stores it as is. The known-chunk check (a stat and a utimes) stays on this
   * thread: a chunk the store has costs no trip to a worker.
   */
  async putChunk(digest: string, payload: Buffer, encoding: ChunkEncoding = 'zstd', opts: PutChunkOptions = {}): Promise<PutChunkResult> {
    assertDigestHex(digest);
    if (this.touchSync(digest, new Date())) return { created: false };
    const target: ChunkUploadTarget = { digest, encoding, tmpPath: this.layout.tempPath('chunk'), finalPath: this.layout.chunkPath(digest) };
    const stored = this.workers ? await this.workers.store(target, payload, opts.transferPayload ?? false) : storeUploadSync(target, payload);
    return { created: true, ...stored };
  }

  /** True if the chunk file exists. Does not touch it and does not read it. */
  async hasChunk(digest: string): Promise<boolean> {
    assertDigestHex(digest);
    return statSync(this.layout.chunkPath(digest), { throwIfNoEntry: false }) !== undefined;
  }

  /**
   * Sets the chunk's mtime to `at`; false if the store does not have it. Both answers "present?"
   * and protects the chunk from a concurrent garbage collection (FORMAT.md §7).
   */
  private touchSync(digest: string, at: Date): boolean {
    const path = this.layout.chunkPath(digest);
    if (statSync(path, { throwIfNoEntry: false }) === undefined) return false;
    try {
      utimesSync(path, at, at);
      return true;
    } catch (err) {
      if (hasErrno(err, 'ENOENT')) return false; // removed between the two calls
      throw err;
    }
  }

  /**
   * Touches each digest (see touchSync) and calls `onMissing` for those the store lacks. Digests
   * must already be validated. Runs in time slices so the event loop stays responsive.
   */
  async touchChunks(digests: Iterable<string>, onMissing: (digest: string) => void, signal?: AbortSignal): Promise<void> {
    const at = new Date();
    let sliceStart = performance.now();
    for (const digest of digests) {
      if (!this.touchSync(digest, at)) onMissing(digest);
      if (performance.now() - sliceStart > SLICE_MS) {
        await yieldToEventLoop();
        throwIfAborted(signal);
        sliceStart = performance.now();
      }
    }
  }

  /**
   * The digests the store lacks, in input order, without duplicates. Present ones are touched,
   * so the answer "present" holds for at least the GC grace period. One stat (and one utimes if
   * present) per distinct digest; nothing is read.
   */
  async missingChunks(digests: readonly string[], signal?: AbortSignal): Promise<string[]> {
    digests.forEach((d, i) => assertDigestHex(d, `digests[${i}]`));
    const missing: string[] = [];
    await this.touchChunks(new Set(digests), (d) => missing.push(d), signal);
    return missing;
  }

  /**
   * The chunk's plaintext, verified on every read: the header is checked, the payload decoded and
   * its SHA-256 compared with `digest`. Throws CHUNK_MISSING if absent, DATA_LOSS (naming the
   * digest) if the file is damaged or unreadable.
   */
  async readChunk(digest: string): Promise<Buffer> {
    const c = await this.readVerified(digest);
    try {
      return Buffer.from(c.plaintext);
    } finally {
      c.release();
    }
  }

  /** As readChunk, into a pooled buffer with headroom before the plaintext; release() it when done. */
  readVerified(digest: string): Promise<ReadChunk> {
    assertDigestHex(digest);
    return this.reads.read(digest, this.layout.chunkPath(digest), 'sha256');
  }

  /**
   * As readVerified, but not hashed: the header and the decoding are checked, the SHA-256 is left
   * to the reader (a restore's agent checks every chunk against its digest; see ReadCheck).
   */
  readDecoded(digest: string): Promise<ReadChunk> {
    assertDigestHex(digest);
    return this.reads.read(digest, this.layout.chunkPath(digest), 'decode');
  }
}
