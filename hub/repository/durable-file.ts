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
    throw new AggregateError([original, cleanupErr], `write failed and its temp file ${tmpPath} could not be removed`);
  }
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
