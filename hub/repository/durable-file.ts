import { closeSync, fsyncSync, openSync, renameSync, rmSync, writevSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Writes `parts` to `finalPath` so that after this resolves the file survives a crash with exactly
 * this content, and before it resolves `finalPath` is either absent or complete (never partial):
 * write to `tmpPath` (same filesystem), fsync it, rename over `finalPath`, fsync the directory.
 * On failure the temp file is removed; a crash can leave it behind for the garbage collector.
 */
export async function writeFileDurably(tmpPath: string, finalPath: string, parts: readonly Uint8Array[]): Promise<void> {
  try {
    const fh = await open(tmpPath, 'wx', 0o644);
    try {
      let pending = parts.filter((p) => p.length > 0);
      while (pending.length > 0) {
        const { bytesWritten } = await fh.writev(pending);
        pending = skipBytes(pending, bytesWritten);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmpPath, finalPath);
  } catch (err) {
    await removeAfterFailure(tmpPath, err);
    throw err;
  }
  await fsyncDirectory(dirname(finalPath));
}

/**
 * writeFileDurably with synchronous calls, the same steps in the same order, for a thread that has
 * nothing else to do meanwhile (the hub's chunk store workers): one call instead of ~9 trips
 * through the libuv pool and back to a busy event loop.
 */
export function writeFileDurablySync(tmpPath: string, finalPath: string, parts: readonly Uint8Array[]): void {
  try {
    const fd = openSync(tmpPath, 'wx', 0o644);
    try {
      let pending = parts.filter((p) => p.length > 0);
      while (pending.length > 0) pending = skipBytes(pending, writevSync(fd, pending));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmpPath, finalPath);
  } catch (err) {
    try {
      rmSync(tmpPath, { force: true });
    } catch (cleanupErr) {
      throw cleanupFailed(tmpPath, err, cleanupErr);
    }
    throw err;
  }
  fsyncDirectorySync(dirname(finalPath));
}

/** Drops the first `n` bytes of a list of buffers (writev may write short). */
function skipBytes(parts: Uint8Array[], n: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  for (const p of parts) {
    if (n >= p.length) {
      n -= p.length;
    } else {
      rest.push(n > 0 ? p.subarray(n) : p);
      n = 0;
    }
  }
  return rest;
}

/** Removes a temp file after a failed write; if that fails too, both errors are reported. */
async function removeAfterFailure(tmpPath: string, original: unknown): Promise<void> {
  try {
    await rm(tmpPath, { force: true });
  } catch (cleanupErr) {
    throw cleanupFailed(tmpPath, original, cleanupErr);
  }
}

function cleanupFailed(tmpPath: string, original: unknown, cleanupErr: unknown): AggregateError {
  return new AggregateError([original, cleanupErr], `write failed and its temp file ${tmpPath} could not be removed`);
}

/** Makes the directory's entries (creations, renames, removals) durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function fsyncDirectorySync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
