import { mkdir, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError, type Driver, type OpenOptions, type Snapshot, type TargetSpec } from '../driver.js';
import { decideBase } from './bitmap-chain.js';
import { queryNodes, taggedObjects } from './block-graph.js';
import { ALLOCATION_CONTEXT, QemuDiskView, dirtyBitmapContext } from './disk-view.js';
import { targetContext, withQmp, type TargetContext } from './job-context.js';
import { removeJournal, type JobJournal } from './job-journal.js';
import { cleanupTargetLeftovers } from './leftover-cleanup.js';
import { NbdClient } from './nbd-client.js';
import { isAlreadyRunning, startNbdServer } from './nbd-server.js';
import { QmpError } from './qmp-client.js';
import { diskObjectNames, jobTag, nbdSocketFile, nextBitmapName } from './qemu-names.js';
import { QemuSnapshot, type DiskJobState } from './qemu-snapshot.js';

/** A disk as open() planned it. */
type PlannedDisk = DiskJobState & {
  sizeBytes: number;
  /** Why the disk is read in full, or null. */
  reason: string | null;
  /** Whether the next bitmap is stored in the image (qcow2 only). */
  persistent: boolean;
};

export interface QemuDriverOptions {
  /** Parent of the per-target runtime directories (overlays, sockets, journals). Default: os.tmpdir(). */
  runtimeDir?: string;
  /** Wait for the QMP greeting; longer than a command because another client may hold the monitor. Default 30 s. */
  qmpConnectTimeoutMs?: number;
  qmpCommandTimeoutMs?: number;
  nbdTimeoutMs?: number;
}

/**
 * The QEMU driver. Target options: `qmpSocket` (required) is a QMP monitor's unix socket;
 * `nbdSocket` names the unix socket of an NBD server QEMU already runs (one is started per job
 * otherwise); `runtimeDir` overrides the driver's. Each disk's `path` is its QEMU block node
 * name (e.g. the qcow2 format node).
 *
 * The point in time is copy-before-write fleecing as QEMU 7.2 offers it: one QMP transaction,
 * for all disks, adds each next bitmap, freezes each base bitmap, and starts a
 * `blockdev-backup sync:none` job per disk into a temporary overlay. That job inserts a
 * copy-before-write filter above the disk (named via `filter-node-name`); a `snapshot-access`
 * node on that filter is the frozen view, exported read-only over NBD with the base bitmap.
 * blockdev-backup is the only transaction action in 7.2 that inserts the filter above a disk that
 * already has writers; a blockdev-add'ed copy-before-write filter would not see their writes.
 */
export class QemuDriver implements Driver {
  readonly name = 'qemu';
  private readonly runtimeDir: string;
  private readonly timeouts: { qmpConnectTimeoutMs: number; qmpCommandTimeoutMs: number; nbdTimeoutMs: number };

  constructor(opts: QemuDriverOptions = {}) {
    this.runtimeDir = opts.runtimeDir ?? tmpdir();
    this.timeouts = {
      qmpConnectTimeoutMs: opts.qmpConnectTimeoutMs ?? 30_000,
      qmpCommandTimeoutMs: opts.qmpCommandTimeoutMs ?? 30_000,
      nbdTimeoutMs: opts.nbdTimeoutMs ?? 60_000,
    };
  }

  async open(target: TargetSpec, opts: OpenOptions): Promise<Snapshot> {
    const ctx = targetContext(target, { runtimeDir: this.runtimeDir, ...this.timeouts });
    const log = opts.log ?? (() => {});
    const tag = jobTag(opts.jobId);
    if (target.disks.length === 0) throw new DriverError('DISK_NOT_FOUND', `target ${target.id} has no disks`);
    await mkdir(ctx.dir, { recursive: true, mode: 0o700 });

    // Inspect and decide before creating anything; failures here leave nothing behind.
    const states = await this.plan(ctx, target, opts, tag).catch((err: unknown) => {
      throw asDriverError(err, `job ${opts.jobId}: open failed`);
    });
    log('info', `qemu: objects of job ${opts.jobId} on target ${target.id} are named bh-${tag}-*`);
    for (const s of states) {
      if (s.reason) log('warn', `qemu: disk ${s.spec.name} is read in full: ${s.reason}`);
      if (!s.persistent) log('warn', `qemu: disk ${s.spec.name} (node ${s.node}) is not qcow2: its change bitmap is lost when QEMU exits, and the next backup reads it in full`);
    }

    const journal: JobJournal = {
      version: 1,
      jobId: opts.jobId,
      tag,
      targetId: target.id,
      createdAt: new Date().toISOString(),
      disks: states.map((s) => ({ name: s.spec.name, node: s.node, base: s.usedBase, next: s.next, overlayPath: s.overlayPath })),
      startedNbdServer: null,
      released: false,
      bitmaps: 'pending',
    };
    const snapshot = new QemuSnapshot(ctx, states, journal);
    await snapshot.persist();

    try {
      await this.build(ctx, snapshot, states);
    } catch (err) {
      const cause = asDriverError(err, `job ${opts.jobId}: open failed`);
      try {
        // Undo everything built so far, including the bitmap transaction if it ran.
        await snapshot.abandoned();
        await removeJournal(ctx.dir, tag);
      } catch (undoErr) {
        throw new DriverError(
          'SNAPSHOT_FAILED',
          `${cause.message}; undoing it failed too, run cleanupLeftovers: ${(undoErr as Error).message}`,
        );
      }
      throw cause;
    }

    snapshot.disks = states.map(
      (s) =>
        new QemuDiskView(s.spec.name, s.sizeBytes, s.reason, s.next, s.nbd!, s.usedBase ? dirtyBitmapContext(s.usedBase) : null, s.names.blockJob),
    );
    return snapshot;
  }

  cleanupLeftovers(target: TargetSpec, liveJobIds: ReadonlySet<string>): Promise<string[]> {
    const ctx = targetContext(target, { runtimeDir: this.runtimeDir, ...this.timeouts });
    return cleanupTargetLeftovers(ctx, target, liveJobIds);
  }

  /** Finds each disk's node, decides on its base bitmap and names its objects. */
  private plan(ctx: TargetContext, target: TargetSpec, opts: OpenOptions, tag: string): Promise<PlannedDisk[]> {
    return withQmp(ctx, async (qmp) => {
      const nodes = await queryNodes(qmp);
      const existing = await taggedObjects(qmp, tag);
      const clash = [...existing.exports, ...existing.nodes, ...existing.jobs];
      if (clash.length > 0) {
        throw new DriverError('SNAPSHOT_FAILED', `job ${opts.jobId}: QEMU already holds objects named after it (${clash.join(', ')}); run cleanupLeftovers`);
      }
      const out: PlannedDisk[] = [];
      for (const [index, spec] of target.disks.entries()) {
        const node = nodes.find((n) => n['node-name'] === spec.path);
        if (!node) throw new DriverError('DISK_NOT_FOUND', `target ${target.id}: disk ${spec.name}: QEMU has no block node "${spec.path}"`);
        const sizeBytes = node.image['virtual-size'];
        const decision = decideBase(spec, node, sizeBytes, opts.baseBitmaps);
        if (!decision.use && decision.inconsistent) {
          // An inconsistent bitmap is useless for good; only removing it lets the disk move on.
          await qmp.execute('block-dirty-bitmap-remove', { node: spec.path, name: decision.inconsistent });
        }
        const names = diskObjectNames(tag, index);
        out.push({
          spec,
          node: spec.path,
          names,
          overlayPath: join(ctx.dir, names.overlayFile),
          requestedBase: opts.baseBitmaps?.[spec.name] ?? null,
          usedBase: decision.use ? decision.base : null,
          next: nextBitmapName(tag, spec.name, sizeBytes),
          nbd: null,
          sizeBytes,
          reason: decision.use ? null : decision.reason,
          // Only qcow2 stores bitmaps; elsewhere the next bitmap lives until QEMU exits.
          persistent: node.drv === 'qcow2',
        });
      }
      return out;
    });
  }

  /** Overlays, the transaction, the views, the NBD server and exports, and the NBD clients. */
  private async build(ctx: TargetContext, snapshot: QemuSnapshot, states: PlannedDisk[]): Promise<void> {
    const { journal } = snapshot;
    for (const s of states) await createSparseFile(s.overlayPath, s.sizeBytes);

    const nbdSocket = await withQmp(ctx, async (qmp) => {
      for (const s of states) {
        await qmp.execute('blockdev-add', {
          driver: 'raw',
          'node-name': s.names.overlayNode,
          file: { driver: 'file', 'node-name': s.names.overlayFileNode, filename: s.overlayPath },
        });
      }

      // The instant: all disks' bitmaps and copy-before-write start together, or none do.
      const actions: object[] = [];
      for (const s of states) {
        actions.push({ type: 'block-dirty-bitmap-add', data: { node: s.node, name: s.next, persistent: s.persistent } });
        if (s.usedBase) actions.push({ type: 'block-dirty-bitmap-disable', data: { node: s.node, name: s.usedBase } });
        actions.push({
          type: 'blockdev-backup',
          data: { device: s.node, target: s.names.overlayNode, sync: 'none', 'job-id': s.names.blockJob, 'filter-node-name': s.names.cbwNode },
        });
      }
      await qmp.execute('transaction', { actions });

      for (const s of states) {
        await qmp.execute('blockdev-add', { driver: 'snapshot-access', 'node-name': s.names.accessNode, file: s.names.cbwNode });
      }

      let socket = ctx.nbdSocket;
      if (!socket) {
        socket = join(ctx.dir, nbdSocketFile(journal.tag));
        try {
          await startNbdServer(qmp, socket);
        } catch (err) {
          if (isAlreadyRunning(err)) {
            throw new DriverError(
              'SNAPSHOT_FAILED',
              `target ${ctx.targetId}: QEMU already runs an NBD server; set target option nbdSocket to its unix socket so exports are added to it`,
            );
          }
          throw err;
        }
        journal.startedNbdServer = socket;
        await snapshot.persist();
      }

      for (const s of states) {
        await qmp.execute('block-export-add', {
          type: 'nbd',
          id: s.names.exportId,
          'node-name': s.names.accessNode,
          name: s.names.exportName,
          writable: false,
          // The bitmap lives on the disk node; QEMU 7.2 exports it on the view in this form.
          ...(s.usedBase ? { bitmaps: [{ node: s.node, name: s.usedBase }] } : {}),
        });
      }
      return socket;
    });

    for (const s of states) {
      s.nbd = await NbdClient.connect({
        address: { path: nbdSocket },
        exportName: s.names.exportName,
        metaContexts: s.usedBase ? [ALLOCATION_CONTEXT, dirtyBitmapContext(s.usedBase)] : [ALLOCATION_CONTEXT],
        timeoutMs: ctx.nbdTimeoutMs,
      });
      if (s.nbd.size !== s.sizeBytes) {
        throw new DriverError('SNAPSHOT_FAILED', `disk ${s.spec.name}: the view has ${s.nbd.size} bytes, the disk ${s.sizeBytes}`);
      }
    }
  }
}

/**
 * The fleecing overlay: a sparse raw file of the disk's size. The snapshot-access view tracks
 * itself which clusters were copied into it, so it needs no qcow2 (no backing chain, no
 * allocation map); making one with qemu-img cost a process start, 60-70 ms of every backup's
 * snapshot in the bench. Only what the guest overwrites during the backup takes space.
 */
async function createSparseFile(path: string, sizeBytes: number): Promise<void> {
  try {
    // 'w': a file of this name can only be an earlier attempt's of the same job.
    const fh = await open(path, 'w', 0o600);
    try {
      await fh.truncate(sizeBytes);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new DriverError('SNAPSHOT_FAILED', `cannot create fleecing overlay ${path}: ${(err as Error).message}`);
  }
}

/** Keeps DriverErrors as they are; QMP and NBD failures become SNAPSHOT_FAILED with context. */
function asDriverError(err: unknown, context: string): DriverError {
  if (err instanceof DriverError) return err;
  if (err instanceof QmpError && (err.code === 'CONNECT_FAILED' || err.code === 'HANDSHAKE_FAILED')) {
    return new DriverError('TARGET_UNREACHABLE', `${context}: ${err.message}`);
  }
  return new DriverError('SNAPSHOT_FAILED', `${context}: ${err instanceof Error ? err.message : String(err)}`);
}
