import { closeSync, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { zstdCompressBound } from '../../shared/chunk/zstd.js';
import { CHUNK_HEADER_BYTES, decodeChunkHeader, decodePayload, digestMismatch } from './chunk-file-format.js';
import type { ChunkStoreWorkers } from './chunk-store-workers.js';
import { hasErrno, RepositoryError } from './errors.js';

/** Room before a read chunk's plaintext for a message header (DownloadChunksResponse's is ~40 bytes). */
export const READ_HEADROOM = 128;
/** The largest chunk file: header plus zstd's worst case for a full chunk (FORMAT.md §3). */
const FILE_BYTES = CHUNK_HEADER_BYTES + zstdCompressBound(CHUNK_SIZE);
/** What one read fills: the headroom, then at most one chunk of plaintext. */
const READ_BUFFER_BYTES = READ_HEADROOM + CHUNK_SIZE;
/** Free plaintext buffers kept: enough for a few restores' read-ahead, bounded when they end. */
const KEEP = 6;

/** A chunk read into a pooled buffer: `plaintext` has `headroom` free bytes before it. */
export interface ReadChunk {
  plaintext: Buffer;
  headroom: number;
  /** Gives the buffer back; the plaintext must not be used after. */
  release(): void;
}

/**
 * This thread's buffer for the chunk file being read, reused (each worker thread has its own): a
 * fresh 4 MiB buffer per chunk counted as new external memory, which V8 answers with a full GC
 * every 64 MiB. One suffices, the read being synchronous.
 */
let fileBuffer: Buffer | undefined;

/**
 * How a read checks a chunk. Always: the header, and a payload that decodes to the header's length.
 * 'sha256' also compares the plaintext's SHA-256 with the digest (verify, and any read whose
 * reader does not). 'decode' leaves that to the reader: a restore's agent hashes every chunk it
 * receives against the index's digest before writing it, and a second SHA-256 of the same 4 MiB
 * on the hub cost 0.6 s of its CPU per GiB (restores of 6.2-6.8 s instead of 7.1-7.4 s, measured
 * with restore-probe on this machine).
 */
export type ReadCheck = 'sha256' | 'decode';

/**
 * Reads the chunk file at `path` and writes its plaintext into `out` (at least one chunk long),
 * checked as `check` says (see ReadCheck). Returns the plaintext length. Throws CHUNK_MISSING if
 * absent, DATA_LOSS (naming the digest) if damaged or unreadable.
 * Synchronous, on whatever thread calls it: the hub's chunk store workers, or the caller's own
 * thread when the repository has none. The one implementation of both paths.
 */
export function readChunkSync(digest: string, path: string, out: Buffer, check: ReadCheck): number {
  fileBuffer ??= Buffer.allocUnsafe(FILE_BYTES + 1);
  const bytes = readWholeSync(digest, path, fileBuffer);
  const { encoding, plaintextLength } = decodeChunkHeader(digest, bytes);
  const target = out.subarray(0, plaintextLength);
  const decoded = decodePayload(digest, encoding, bytes.subarray(CHUNK_HEADER_BYTES), plaintextLength, target);
  const n = decoded.length;
  if (n !== plaintextLength) {
    throw new RepositoryError('DATA_LOSS', `chunk ${digest}: payload decodes to ${n} bytes, header says ${plaintextLength}`, { digest, reason: 'undecodable' });
  }
  // 'none' answers with the payload itself, in this thread's file buffer.
  if (decoded.buffer !== target.buffer || decoded.byteOffset !== target.byteOffset) decoded.copy(target);
  if (check === 'decode') return n;
  const actual = createHash('sha256').update(target).digest('hex');
  if (actual !== digest) throw digestMismatch(digest, actual);
  return n;
}

/**
 * Reads chunks into reused buffers with READ_HEADROOM before the plaintext, so a restore can put
 * its message header there instead of copying the chunk into a message. With `workers` the reads
 * run on those threads, each buffer moved there and back (the hub: its event loop, busy with every
 * agent's TLS and gRPC, makes one round trip per chunk instead of one per fs call); without, on
 * the caller's thread, synchronously (tests, tools). Both run readChunkSync.
 */
export class ChunkReads {
  /** Free buffers. One that comes back from a worker is a new ArrayBuffer over the same memory. */
  private readonly free: ArrayBuffer[] = [];

  constructor(private readonly workers?: ChunkStoreWorkers) {}

  async read(digest: string, path: string, check: ReadCheck): Promise<ReadChunk> {
    let held = this.free.pop() ?? new ArrayBuffer(READ_BUFFER_BYTES);
    let n: number;
    if (this.workers) {
      // On any failure the buffer stays with the worker's answer or the dead thread: it is not reused.
      ({ plaintextLength: n, buffer: held } = await this.workers.read(digest, path, held, READ_HEADROOM, check));
    } else {
      try {
        n = readChunkSync(digest, path, Buffer.from(held, READ_HEADROOM), check);
      } catch (err) {
        this.give(held);
        throw err;
      }
    }
    let released = false;
    return {
      plaintext: Buffer.from(held, READ_HEADROOM, n),
      headroom: READ_HEADROOM,
      release: () => {
        if (released) return;
        released = true;
        this.give(held);
      },
    };
  }

  private give(b: ArrayBuffer): void {
    if (this.free.length < KEEP && !this.free.includes(b)) this.free.push(b);
  }
}

/** The whole file into `into`; a file longer than any chunk file can be is damaged. */
function readWholeSync(digest: string, path: string, into: Buffer): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) throw new RepositoryError('CHUNK_MISSING', `chunk ${digest} is not in the repository`, { digests: [digest], count: 1 });
    throw unreadable(digest, err);
  }
  try {
    let n = 0;
    for (;;) {
      const bytesRead = readSync(fd, into, n, into.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === into.length) throw new RepositoryError('DATA_LOSS', `chunk ${digest}: file is longer than any chunk file (${into.length - 1} bytes)`, { digest, reason: 'bad-header' });
    }
    return into.subarray(0, n);
  } catch (err) {
    if (err instanceof RepositoryError) throw err;
    throw unreadable(digest, err);
  } finally {
    closeSync(fd);
  }
}

function unreadable(digest: string, err: unknown): Error {
  if (hasErrno(err, 'EIO')) return new RepositoryError('DATA_LOSS', `chunk ${digest}: read failed (EIO)`, { digest, reason: 'unreadable' }, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}
