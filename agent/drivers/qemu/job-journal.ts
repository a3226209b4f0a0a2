import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BitmapPair } from './bitmap-chain.js';
import { journalFile } from './qemu-names.js';

/**
 * A job's journal in the target's runtime directory. It is written before open() touches QEMU
 * and removed once the job's objects are released and its bitmaps resolved (committed or
 * abandoned). A journal left behind means the agent died in between: cleanupLeftovers uses it
 * to tell the dead job's next bitmap from the live base, which QEMU's state alone cannot do for
 * a full backup (both are lone recording bitmaps).
 */
export interface JobJournal {
  version: 1;
  jobId: string;
  tag: string;
  targetId: string;
  createdAt: string;
  disks: (BitmapPair & { name: string; overlayPath: string })[];
  /** The NBD server socket this job started, if it started one. */
  startedNbdServer: string | null;
  released: boolean;
  /** 'pending' until committed() or abandoned() settled the bitmaps. */
  bitmaps: 'pending' | 'committed' | 'abandoned';
}

/** Writes the journal atomically (a rename), so a crash never leaves half a file. */
export async function writeJournal(dir: string, j: JobJournal): Promise<void> {
  const path = join(dir, journalFile(j.tag));
  await writeFile(`${path}.tmp`, JSON.stringify(j, null, 2));
  await rename(`${path}.tmp`, path);
}

export async function removeJournal(dir: string, tag: string): Promise<void> {
  await rm(join(dir, journalFile(tag)), { force: true });
}

/** Every journal in `dir`, and the files that could not be read as one. */
export async function readJournals(dir: string): Promise<{ journals: JobJournal[]; unreadable: string[] }> {
  const journals: JobJournal[] = [];
  const unreadable: string[] = [];
  for (const f of await readdir(dir).catch(ignoreMissingDir)) {
    if (!/^bh-[0-9a-f]{12}\.journal\.json$/.test(f)) continue;
    try {
      const j = JSON.parse(await readFile(join(dir, f), 'utf8')) as JobJournal;
      if (j.version !== 1 || !Array.isArray(j.disks)) throw new Error(`unknown journal version ${String(j.version)}`);
      journals.push(j);
    } catch (err) {
      unreadable.push(`${f}: ${(err as Error).message}`);
    }
  }
  return { journals, unreadable };
}

/** A runtime directory that does not exist yet simply holds nothing. */
export function ignoreMissingDir(err: NodeJS.ErrnoException): string[] {
  if (err.code === 'ENOENT') return [];
  throw err;
}
