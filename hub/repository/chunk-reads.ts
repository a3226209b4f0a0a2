import { open } from 'node:fs/promises';
import { CHUNK_SIZE } from '../../shared/chunk/geometry.js';
import { zstdCompressBound } from '../../shared/chunk/zstd.js';
import { checkDigest, CHUNK_HEADER_BYTES, decodeChunkHeader, decodePayload } from './chunk-file-format.js';
import { hasErrno, RepositoryError } from './errors.js';

/** Room before a read chunk's plaintext for a message header (DownloadChunksResponse's is ~40 bytes). */
export const READ_HEADROOM = 128;
/** The largest chunk file: header plus zstd's worst case for a full chunk (FORMAT.md §3). */
const FILE_BYTES = CHUNK_HEADER_BYTES + zstdCompressBound(CHUNK_SIZE);
/** Free buffers kept per kind: enough for a few restores' read-ahead, bounded when they end. */
const KEEP = 8;

/** A verified chunk in a pooled buffer: `plaintext` has `headroom` free bytes before it. */
export interface ReadChunk {
  plaintext: Buffer;
  headroom: number;
  /** Gives the buffer back; the plaintext must not be used after. */
  release(): void;
}

/**
 * Reads chunk files into reused buffers: a restore reads every chunk of a disk, and a fresh
 * buffer for the file and another for its plaintext per 4 MiB chunk (readFile, zstdDecompress)
 * counted as new external memory each time, which V8 answers with a full GC every 64 MiB.
 */
export class ChunkReads {
  private readonly files: Buffer[] = [];
  private readonly plains: Buffer[] = [];

  /**
   * The chunk's plaintext, verified: header checked, payload decoded, SHA-256 compared with the
   * digest. Throws CHUNK_MISSING if absent, DATA_LOSS (naming the digest) if damaged or unreadable.
   */
  async read(digest: string, path: string): Promise<ReadChunk> {
    const file = this.files.pop() ?? Buffer.allocUnsafe(FILE_BYTES + 1);
    let plain: Buffer | null = null;
    try {
      const bytes = await readWhole(digest, path, file);
      const { encoding, plaintextLength } = decodeChunkHeader(digest, bytes);
      const payload = bytes.subarray(CHUNK_HEADER_BYTES);
      plain = this.plains.pop() ?? Buffer.allocUnsafe(READ_HEADROOM + CHUNK_SIZE);
      const out = plain.subarray(READ_HEADROOM, READ_HEADROOM + plaintextLength);
      const decoded = decodePayload(digest, encoding, payload, plaintextLength, out);
      // 'none' answers with the payload itself, in the file buffer that goes back to its pool.
      if (decoded.buffer !== out.buffer) decoded.copy(out);
      const n = decoded.length;
      if (n !== plaintextLength) {
        throw new RepositoryError('DATA_LOSS', `chunk ${digest}: payload decodes to ${n} bytes, header says ${plaintextLength}`, { digest, reason: 'undecodable' });
      }
      this.give(this.files, file);
      const plaintext = out.subarray(0, n);
      await checkDigest(digest, plaintext);
      const held = plain;
      plain = null;
      let released = false;
      return {
        plaintext,
        headroom: READ_HEADROOM,
        release: () => {
          if (released) return;
          released = true;
          this.give(this.plains, held);
        },
      };
    } catch (err) {
      // A buffer a failed read used goes back too: nothing else holds it.
      this.give(this.files, file);
      if (plain) this.give(this.plains, plain);
      throw err;
    }
  }

  private give(pool: Buffer[], b: Buffer): void {
    if (pool.length < KEEP && !pool.includes(b)) pool.push(b);
  }
}

/** The whole file into `into`; a file longer than any chunk file can be is damaged. */
async function readWhole(digest: string, path: string, into: Buffer): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (hasErrno(err, 'ENOENT')) throw new RepositoryError('CHUNK_MISSING', `chunk ${digest} is not in the repository`, { digests: [digest], count: 1 });
    throw unreadable(digest, err);
  }
  try {
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(into, n, into.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n === into.length) throw new RepositoryError('DATA_LOSS', `chunk ${digest}: file is longer than any chunk file (${into.length - 1} bytes)`, { digest, reason: 'bad-header' });
    }
    return into.subarray(0, n);
  } catch (err) {
    if (err instanceof RepositoryError) throw err;
    throw unreadable(digest, err);
  } finally {
    await fh.close();
  }
}

function unreadable(digest: string, err: unknown): Error {
  if (hasErrno(err, 'EIO')) return new RepositoryError('DATA_LOSS', `chunk ${digest}: read failed (EIO)`, { digest, reason: 'unreadable' }, { cause: err });
  return err instanceof Error ? err : new Error(String(err));
}
