import { execFile } from 'node:child_process';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { CHUNK_SIZE, chunkCount, chunkLength } from '../../shared/chunk/geometry.js';
import { DIGEST_BYTES } from '../../shared/chunk/digest.js';
import { ImageFormat, type DiskResult, type RestoreDisk } from '../../shared/gen/backhaul/v1/agent.js';
import type { DataClient } from '../data-client.js';
import { RestoreError } from './restore-error.js';
import { RestoreWriter } from './restore-writer.js';
import { DestinationFlush } from './destination-flush.js';

const run = promisify(execFile);
/** Digests per DownloadChunks call: bounds the hub's work per stream and our wait per batch. */
const BATCH = 64;
const ZERO_DIGEST = Buffer.alloc(DIGEST_BYTES);
/** Chunks being verified and written while the next arrive: their buffers are what a restore holds. */
const WRITES_AHEAD = 4;

export interface RestoreProgress {
  bytesTotal: number;
  bytesDone: number;
  bytesTransferred: number;
  bytesZero: number;
}

/**
 * Writes one disk of a backup. Chunks arrive in disk order, each verified against its digest
 * before it is written; all-zero chunks of a new file stay holes. The SHA-256 of the whole
 * image is computed on the way, in order, and returned. Verifying, hashing and writing happen on
 * a thread of their own (RestoreWriter); this one receives the chunks and keeps the order.
 */
export async function restoreDisk(
  data: DataClient,
  jobId: string,
  backupId: string,
  disk: RestoreDisk,
  progress: (delta: Partial<RestoreProgress>) => void,
  signal: AbortSignal,
): Promise<DiskResult> {
  const index = await data.getIndex(jobId, backupId, disk.diskName);
  progress({ bytesTotal: index.diskSize });
  if (index.chunkSize !== CHUNK_SIZE) throw new RestoreError('DESTINATION_INVALID', `unsupported chunk size ${index.chunkSize}`);
  const qcow2 = disk.format === ImageFormat.IMAGE_FORMAT_QCOW2;
  // A qcow2 image is written raw first and converted: qemu-img keeps the holes.
  const rawPath = qcow2 ? `${disk.destinationPath}.bh-${jobId}.raw` : disk.destinationPath;
  if (qcow2 && !disk.create) throw new RestoreError('DESTINATION_INVALID', 'a qcow2 restore always creates a new image');
  const { fh, fresh } = await openDestination(rawPath, disk.create || qcow2, index.diskSize);
  const count = chunkCount(index.diskSize);
  const digestAt = (k: number) => index.digests.subarray(k * DIGEST_BYTES, (k + 1) * DIGEST_BYTES);
  /** Zero runs and chunks handed to the writer thread and not yet written, oldest first. */
  const writes: Promise<void>[] = [];
  let writer: RestoreWriter | null = null;
  const flush = new DestinationFlush(fh);
  let sha256: string;
  try {
    writer = await RestoreWriter.open(fh.fd, fresh);
    const w = writer;
    const queue = async (write: Promise<void>) => {
      write.catch(() => {}); // surfaced when awaited below
      writes.push(write);
      while (writes.length > WRITES_AHEAD) await writes.shift();
    };
    for (let first = 0; first < count; first += BATCH) {
      if (signal.aborted) throw new RestoreError('DESTINATION_INVALID', 'cancelled');
      const last = Math.min(count, first + BATCH);
      const wanted: Buffer[] = [];
      for (let i = first; i < last; i++) if (!digestAt(i).equals(ZERO_DIGEST)) wanted.push(digestAt(i));
      // Walk the chunks in order: each run of zero chunks goes to the writer as the cursor reaches
      // it, and each downloaded chunk is handed over before the next is taken off the stream.
      let i = first;
      const passZeros = async () => {
        const start = i;
        while (i < last && digestAt(i).equals(ZERO_DIGEST)) i++;
        if (i === start) return;
        const offset = start * CHUNK_SIZE;
        const length = Math.min(i * CHUNK_SIZE, index.diskSize) - offset;
        await queue(
          w.zeros(offset, length).then(() => {
            if (!fresh) flush.wrote(length);
            progress({ bytesDone: length, bytesZero: length });
          }),
        );
      };
      await passZeros();
      if (wanted.length > 0) {
        await data.download(
          jobId,
          Buffer.concat(wanted),
          async (digest, chunk) => {
            await passZeros();
            const d = digestAt(i);
            const len = chunkLength(index.diskSize, i);
            if (i >= last || !digest.equals(d)) throw new RestoreError('DATA_LOSS', `chunk ${i}: the hub sent ${digest.toString('hex')} instead of ${d.toString('hex')}`);
            if (chunk.length !== len) throw new RestoreError('DATA_LOSS', `chunk ${i} (${d.toString('hex')}) has ${chunk.length} bytes, not ${len}`);
            // The message's buffer (chunk and digest) moves to the writer thread here.
            await queue(
              w.chunk(i, i * CHUNK_SIZE, d.toString('hex'), chunk).then(() => {
                flush.wrote(len);
                progress({ bytesDone: len, bytesTransferred: len });
              }),
            );
            i++;
            await passZeros();
          },
          signal,
        );
      }
      await passZeros();
      if (i !== last) throw new RestoreError('DATA_LOSS', `the hub sent chunks up to ${i}, not ${last}`);
    }
    while (writes.length > 0) await writes.shift();
    sha256 = await w.finish();
    await flush.finish();
  } catch (err) {
    // No write or flush may still be running when the file is closed (and maybe removed).
    await Promise.allSettled(writes);
    await flush.settle();
    await writer?.close();
    await fh.close();
    if (fresh) await rm(rawPath, { force: true });
    throw err;
  }
  await writer.close();
  await fh.close();
  if (qcow2) {
    try {
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', rawPath, disk.destinationPath]);
    } catch (err) {
      throw new RestoreError('CONVERT_FAILED', `qemu-img convert failed: ${(err as Error).message}`);
    } finally {
      await rm(rawPath, { force: true });
    }
  }
  return { diskName: disk.diskName, sizeBytes: index.diskSize, nextBitmap: '', fullReadReason: '', sha256 };
}

/** Opens the destination: a new file (refusing to overwrite), an existing file, or a block device of sufficient size. */
async function openDestination(path: string, create: boolean, size: number): Promise<{ fh: FileHandle; fresh: boolean }> {
  if (create) {
    const fh = await open(path, 'wx', 0o600).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new RestoreError('DESTINATION_EXISTS', `${path} exists; restore to a new path or allow overwriting`);
      throw new RestoreError('DESTINATION_INVALID', `cannot create ${path}: ${err.message}`);
    });
    await fh.truncate(size);
    return { fh, fresh: true };
  }
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new RestoreError('DESTINATION_INVALID', `cannot use ${path}: ${err.message}`);
  });
  const fh = await open(path, 'r+');
  if (st.isFile()) await fh.truncate(size);
  else if (!st.isBlockDevice()) {
    await fh.close();
    throw new RestoreError('DESTINATION_INVALID', `${path} is neither a file nor a block device`);
  }
  return { fh, fresh: false };
}
