import { rm } from 'node:fs/promises';
import { DriverError, type DiskSpec, type DiskView, type Snapshot } from '../driver.js';
import { abandonNext, retireBases } from './bitmap-chain.js';
import { removeTaggedObjects } from './block-graph.js';
import { withQmp, type TargetContext } from './job-context.js';
import { removeJournal, writeJournal, type JobJournal } from './job-journal.js';
import type { NbdClient } from './nbd-client.js';
import { stopNbdServer } from './nbd-server.js';
import type { DiskObjectNames } from './qemu-names.js';

/** What one job did to one disk. */
export interface DiskJobState {
  spec: DiskSpec;
  /** The disk's QEMU node. */
  node: string;
  names: DiskObjectNames;
  overlayPath: string;
  /** The base the hub asked for, whether or not it could be used. */
  requestedBase: string | null;
  /** The base this job froze and exported, or null when the disk is read in full. */
  usedBase: string | null;
  next: string;
  nbd: NbdClient | null;
}

/**
 * The point-in-time views of a target's disks for one job, and the way out of it: release()
 * tears down what open() built, committed() and abandoned() settle the bitmaps. All three are
 * serialised, and committed()/abandoned() release first: the exports hold the base bitmaps busy.
 */
export class QemuSnapshot implements Snapshot {
  disks: DiskView[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly ctx: TargetContext,
    readonly states: DiskJobState[],
    readonly journal: JobJournal,
  ) {}

  committed(): Promise<void> {
    return this.serialize(async () => {
      if (this.journal.bitmaps === 'committed') return;
      if (this.journal.bitmaps === 'abandoned') throw new DriverError('SNAPSHOT_FAILED', `job ${this.journal.jobId}: bitmaps were already abandoned`);
      await this.doRelease();
      // Retire every base the hub asked for, used or not: the hub now bases on next.
      const bases = this.states.filter((s) => s.requestedBase && s.requestedBase !== s.next).map((s) => ({ node: s.node, name: s.requestedBase! }));
      await withQmp(this.ctx, (qmp) => retireBases(qmp, bases));
      await this.settle('committed');
    });
  }

  abandoned(): Promise<void> {
    return this.serialize(async () => {
      if (this.journal.bitmaps === 'abandoned') return;
      if (this.journal.bitmaps === 'committed') throw new DriverError('SNAPSHOT_FAILED', `job ${this.journal.jobId}: bitmaps were already committed`);
      await this.doRelease();
      await withQmp(this.ctx, (qmp) => abandonNext(qmp, this.states.map((s) => ({ node: s.node, base: s.usedBase, next: s.next }))));
      await this.settle('abandoned');
    });
  }

  release(): Promise<void> {
    return this.serialize(() => this.doRelease());
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    // The queue only orders calls; each caller sees its own outcome.
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Idempotent: after a failure, the next call tries again from what is left. */
  private async doRelease(): Promise<void> {
    if (this.journal.released) return;
    for (const s of this.states) {
      // Disconnect before deleting the export, so QEMU has no client to drop.
      await s.nbd?.close();
      s.nbd = null;
    }
    await withQmp(this.ctx, async (qmp) => {
      await removeTaggedObjects(qmp, this.journal.tag);
      if (this.journal.startedNbdServer) {
        await stopNbdServer(qmp);
        await rm(this.journal.startedNbdServer, { force: true });
      }
    });
    for (const s of this.states) await rm(s.overlayPath, { force: true });
    this.journal.released = true;
    await this.persist();
  }

  private async settle(outcome: 'committed' | 'abandoned'): Promise<void> {
    this.journal.bitmaps = outcome;
    await this.persist();
  }

  /** The journal goes once nothing is left to undo. */
  async persist(): Promise<void> {
    if (this.journal.released && this.journal.bitmaps !== 'pending') await removeJournal(this.ctx.dir, this.journal.tag);
    else await writeJournal(this.ctx.dir, this.journal);
  }
}
