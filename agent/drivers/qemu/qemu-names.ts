import { createHash } from 'node:crypto';

/**
 * How the qemu driver names what it creates. Every name starts with `bh-<tag>-`, where the tag
 * is derived from the job id: QEMU node names are limited to 31 characters and a UUID job id
 * alone has 36, so the tag is the first 12 hex digits of the job id's SHA-256. A name's tag is
 * enough to tell whether it belongs to a live job (compare with the live ids' tags).
 */

const TAG_LEN = 12;
const PREFIX = 'bh-';

export const jobTag = (jobId: string): string => createHash('sha256').update(jobId).digest('hex').slice(0, TAG_LEN);

/** The tag of a name the driver made, or null for anything else. */
export function tagOf(name: string): string | null {
  const m = /^bh-([0-9a-f]{12})(?:-|\.|$)/.exec(name);
  return m ? m[1]! : null;
}

/** Names of one disk's objects for one job; `index` is the disk's position in the target. */
export interface DiskObjectNames {
  /** The fleecing overlay (a raw format node on a sparse file) that receives copy-before-write data. */
  overlayNode: string;
  /** The overlay's file node. */
  overlayFileNode: string;
  /** The copy-before-write filter the backup job inserts above the disk. */
  cbwNode: string;
  /** The snapshot-access node: the point-in-time view that is exported. */
  accessNode: string;
  /** The `blockdev-backup sync:none` job that keeps copy-before-write active. */
  blockJob: string;
  exportId: string;
  /** NBD export name. */
  exportName: string;
  /** File name of the overlay inside the runtime directory. */
  overlayFile: string;
}

export function diskObjectNames(tag: string, index: number): DiskObjectNames {
  const base = `${PREFIX}${tag}`;
  return {
    overlayNode: `${base}-fl${index}`,
    overlayFileNode: `${base}-ff${index}`,
    cbwNode: `${base}-cbw${index}`,
    accessNode: `${base}-sa${index}`,
    blockJob: `${base}-bk${index}`,
    exportId: `${base}-ex${index}`,
    exportName: `${base}-${index}`,
    overlayFile: `${base}-fl${index}${OVERLAY_SUFFIX}`,
  };
}

/** Suffix of the sparse files that receive copy-before-write data. */
const OVERLAY_SUFFIX = '.fleece';

/** A fleecing overlay file (`.qcow2` is what agents before the raw overlays made; still removed). */
export const isOverlayFile = (name: string) => name.endsWith(OVERLAY_SUFFIX) || name.endsWith('.qcow2');

/** The NBD server socket the driver starts when the target names none. */
export const nbdSocketFile = (tag: string) => `${PREFIX}${tag}.nbd.sock`;
/** The journal that lets cleanupLeftovers undo a job that never finished. */
export const journalFile = (tag: string) => `${PREFIX}${tag}.journal.json`;

/**
 * The bitmap that records changes after this job's instant. It carries the disk size so that a
 * later incremental can tell the disk was resized since (QEMU resizes bitmaps silently and
 * reports no size for them).
 */
export const nextBitmapName = (tag: string, diskName: string, sizeBytes: number) => `${PREFIX}${tag}-${sanitize(diskName)}-${sizeBytes}`;

/** The disk size a bitmap name records, or null for a bitmap the driver did not name. */
export function bitmapRecordedSize(name: string): number | null {
  const m = /^bh-[0-9a-f]{12}-.+-(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Keeps disk names readable in bitmap names while staying within QEMU's id characters. */
function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
}
