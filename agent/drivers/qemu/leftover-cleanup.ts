import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverError, type TargetSpec } from '../driver.js';
import { abandonNext } from './bitmap-chain.js';
import { queryNodes, removeTaggedObjects, taggedObjects } from './block-graph.js';
import { withQmp, type TargetContext } from './job-context.js';
import { ignoreMissingDir, readJournals, removeJournal } from './job-journal.js';
import { socketAnswers, stopNbdServer } from './nbd-server.js';
import type { QmpClient } from './qmp-client.js';
import { isOverlayFile, jobTag, nbdSocketFile, tagOf } from './qemu-names.js';

/**
 * Removes what jobs that no longer run left on a target: exports, nodes and block jobs named
 * after them, the NBD server one of them started, overlay files, and their unsettled bitmaps,
 * which are treated as abandoned (next merged back into base, or removed when there was none).
 * Returns a line per thing removed; throws CLEANUP_FAILED, listing both, if anything failed.
 */
export async function cleanupTargetLeftovers(ctx: TargetContext, target: TargetSpec, liveJobIds: ReadonlySet<string>): Promise<string[]> {
  const liveTags = new Set([...liveJobIds].map(jobTag));
  const removed: string[] = [];
  const problems: string[] = [];
  const { journals, unreadable } = await readJournals(ctx.dir);
  problems.push(...unreadable.map((u) => `unreadable journal ${u}`));
  const files = await readdir(ctx.dir).catch(ignoreMissingDir);

  await withQmp(ctx, async (qmp) => {
    const objs = await taggedObjects(qmp);
    const deadTags = new Set<string>();
    for (const name of [...objs.exports, ...objs.nodes, ...objs.jobs, ...files, ...journals.map((j) => `bh-${j.tag}`)]) {
      const tag = tagOf(name);
      if (tag && !liveTags.has(tag)) deadTags.add(tag);
    }

    for (const tag of deadTags) {
      const journal = journals.find((j) => j.tag === tag);
      const job = journal ? `job ${journal.jobId}` : `bh-${tag}`;
      try {
        removed.push(...(await removeTaggedObjects(qmp, tag)));
        if (files.includes(nbdSocketFile(tag))) {
          const sock = join(ctx.dir, nbdSocketFile(tag));
          // A server answering on the dead job's socket is the one it started.
          if ((await socketAnswers(sock)) && (await stopNbdServer(qmp))) removed.push(`NBD server on ${sock}`);
          await rm(sock, { force: true });
        }
        if (journal && journal.bitmaps === 'pending') removed.push(...(await abandonNext(qmp, journal.disks)));
        for (const f of files.filter((f) => tagOf(f) === tag && isOverlayFile(f))) {
          await rm(join(ctx.dir, f), { force: true });
          removed.push(`overlay file ${f}`);
        }
        if (journal) await removeJournal(ctx.dir, tag);
      } catch (err) {
        problems.push(`${job}: ${(err as Error).message}`);
      }
    }

    try {
      removed.push(...(await mergeOrphanedNextBitmaps(qmp, target, liveTags)));
    } catch (err) {
      problems.push(`bitmaps: ${(err as Error).message}`);
    }
  });

  if (problems.length > 0) {
    throw new DriverError('CLEANUP_FAILED', `target ${target.id}: cleanup failed: ${problems.join('; ')} (removed: ${removed.join('; ') || 'nothing'})`);
  }
  return removed;
}

/**
 * Without a journal (the runtime directory was lost), an interrupted incremental still shows in
 * QEMU: a disabled driver bitmap is a base frozen by a job that never settled, because no driver
 * bitmap is disabled otherwise. The recording driver bitmaps beside it are that job's next (and
 * any leaked one); merging them back is always safe, since more dirty bits only mean more reading.
 * A full backup's next cannot be told from the current base this way and is left alone.
 */
async function mergeOrphanedNextBitmaps(qmp: QmpClient, target: TargetSpec, liveTags: ReadonlySet<string>): Promise<string[]> {
  const nodes = await queryNodes(qmp);
  const done: string[] = [];
  for (const disk of target.disks) {
    const node = nodes.find((n) => n['node-name'] === disk.path);
    const ours = (node?.['dirty-bitmaps'] ?? []).filter((b) => b.name && tagOf(b.name));
    if (ours.some((b) => liveTags.has(tagOf(b.name!)!))) continue; // a live job works on this disk
    const frozen = ours.filter((b) => !b.recording && !b.busy && !b.inconsistent);
    const nexts = ours.filter((b) => b.recording && !b.busy && !b.inconsistent);
    if (frozen.length !== 1 || nexts.length === 0) continue;
    const base = frozen[0]!.name!;
    for (const n of nexts) {
      done.push(...(await abandonNext(qmp, [{ node: disk.path, base, next: n.name! }])));
    }
  }
  return done;
}
