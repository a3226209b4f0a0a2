import type { DiskSpec } from '../driver.js';
import { findBitmap, queryNodes, type BlockNodeInfo } from './block-graph.js';
import type { QmpClient } from './qmp-client.js';
import { bitmapRecordedSize } from './qemu-names.js';

/**
 * The dirty bitmaps that chain incrementals. Each backup adds a `next` bitmap at its instant
 * and freezes the `base` (the previous backup's `next`). On commit the base is retired and next
 * becomes the base of the following backup; on abandon next is merged back into base, so that
 * base again holds every change since the last committed backup.
 */

/** Whether a disk's base bitmap can be used, and why not. */
export type BaseDecision =
  | { use: true; base: string }
  /** `reason` is null for a full backup nobody asked to be incremental. */
  | { use: false; reason: string | null; inconsistent?: string };

/** Decides whether `disk` can read only the changes since its base bitmap. */
export function decideBase(disk: DiskSpec, node: BlockNodeInfo, sizeBytes: number, baseBitmaps: Record<string, string> | undefined): BaseDecision {
  if (baseBitmaps === undefined) return { use: false, reason: null };
  const base = baseBitmaps[disk.name];
  if (base === undefined) return { use: false, reason: `no base bitmap for disk ${disk.name}: it is new since the last backup` };
  const bm = node['dirty-bitmaps']?.find((b) => b.name === base);
  const where = `base bitmap ${base} on node ${node['node-name']}`;
  if (!bm) return { use: false, reason: `${where} is missing` };
  if (bm.inconsistent) {
    return { use: false, reason: `${where} is inconsistent (the image was not closed cleanly); it is removed`, inconsistent: base };
  }
  if (bm.busy) return { use: false, reason: `${where} is in use by another operation` };
  if (!bm.recording) return { use: false, reason: `${where} is disabled (frozen by a backup that never finished)` };
  const recorded = bitmapRecordedSize(base);
  if (recorded !== null && recorded !== sizeBytes) {
    return { use: false, reason: `disk ${disk.name} was resized from ${recorded} to ${sizeBytes} bytes since ${where} was created` };
  }
  return { use: true, base };
}

/** One disk's bitmaps for one job. `base` is set only when the job froze it. */
export interface BitmapPair {
  node: string;
  base: string | null;
  next: string;
}

/**
 * The backup failed or was cancelled: in one transaction per call, re-enable each frozen base,
 * merge next into it and remove next (or just remove next when there was no base). Disks whose
 * next bitmap does not exist (the job never reached its transaction, or this already ran) are
 * skipped. Returns a line per disk it changed.
 */
export async function abandonNext(qmp: QmpClient, pairs: readonly BitmapPair[]): Promise<string[]> {
  const nodes = await queryNodes(qmp);
  const actions: object[] = [];
  const done: string[] = [];
  for (const p of pairs) {
    if (!findBitmap(nodes, p.node, p.next)) continue;
    const base = p.base ? findBitmap(nodes, p.node, p.base) : undefined;
    if (p.base && base && !base.inconsistent) {
      if (!base.recording) actions.push({ type: 'block-dirty-bitmap-enable', data: { node: p.node, name: p.base } });
      actions.push({ type: 'block-dirty-bitmap-merge', data: { node: p.node, target: p.base, bitmaps: [p.next] } });
      done.push(`bitmap ${p.next} merged into ${p.base} on ${p.node}`);
    } else {
      done.push(`bitmap ${p.next} removed from ${p.node}`);
    }
    actions.push({ type: 'block-dirty-bitmap-remove', data: { node: p.node, name: p.next } });
  }
  if (actions.length > 0) await qmp.execute('transaction', { actions });
  return done;
}

/**
 * The backup was committed: remove each retired base (next is now the base). Bases that no
 * longer exist are skipped; busy ones are left for the operation holding them.
 */
export async function retireBases(qmp: QmpClient, bases: readonly { node: string; name: string }[]): Promise<string[]> {
  const nodes = await queryNodes(qmp);
  const actions: object[] = [];
  const done: string[] = [];
  for (const b of bases) {
    const bm = findBitmap(nodes, b.node, b.name);
    if (!bm || bm.busy) continue;
    actions.push({ type: 'block-dirty-bitmap-remove', data: { node: b.node, name: b.name } });
    done.push(`bitmap ${b.name} removed from ${b.node}`);
  }
  if (actions.length > 0) await qmp.execute('transaction', { actions });
  return done;
}
