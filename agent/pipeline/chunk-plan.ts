import type { AllocationExtent, Extent } from '../drivers/driver.js';

/** What the pipeline does with one fixed-size chunk of a disk. */
export type ChunkAction =
  /** Entirely in zero/hole extents: recorded as the zero chunk, never read. */
  | { kind: 'zero' }
  /** Unchanged since the parent backup: its digest is reused, never read. */
  | { kind: 'reuse'; digest: string }
  /** Must be read, hashed and (if the hub lacks it) uploaded. */
  | { kind: 'read' };

export interface PlanInput {
  sizeBytes: number;
  chunkSize: number;
  allocation: AllocationExtent[];
  /** Changed extents since the parent, or null to read every non-zero chunk. */
  changed: Extent[] | null;
  /** The parent backup's digests for this disk (null entries are zero chunks), when there is one of the same size. */
  parentDigests: (string | null)[] | null;
}

/**
 * Decides per chunk whether to skip it as zero, reuse the parent's digest, or read it. A chunk
 * is read when any byte of it is allocated data and, for an incremental, any byte of it changed.
 * Reads are therefore the changed extents rounded out to whole chunks.
 */
export function planChunks(p: PlanInput): ChunkAction[] {
  const count = Math.ceil(p.sizeBytes / p.chunkSize);
  const hasData = markChunks(count, p.chunkSize, p.allocation.filter((e) => !e.zero));
  const incremental = p.changed !== null && p.parentDigests !== null && p.parentDigests.length === count;
  const dirty = incremental ? markChunks(count, p.chunkSize, p.changed!) : null;
  const plan: ChunkAction[] = new Array(count);
  for (let i = 0; i < count; i++) {
    if (!hasData[i]) plan[i] = { kind: 'zero' };
    else if (dirty && !dirty[i]) {
      const parent = p.parentDigests![i];
      // A chunk the parent saw as zero but that now holds data must have changed; read it to be safe.
      plan[i] = parent ? { kind: 'reuse', digest: parent } : { kind: 'read' };
    } else plan[i] = { kind: 'read' };
  }
  return plan;
}

/** Marks every chunk that any extent touches. */
function markChunks(count: number, chunkSize: number, extents: Extent[]): Uint8Array {
  const marks = new Uint8Array(count);
  for (const e of extents) {
    if (e.length <= 0) continue;
    const first = Math.floor(e.offset / chunkSize);
    const last = Math.min(count - 1, Math.floor((e.offset + e.length - 1) / chunkSize));
    marks.fill(1, first, last + 1);
  }
  return marks;
}
