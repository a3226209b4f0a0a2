import { DigestList } from '../../shared/chunk/digest.js';
import type { DiskResult, StartBackup } from '../../shared/gen/backhaul/v1/agent.js';
import type { DataClient } from '../data-client.js';
import type { Driver, Snapshot } from '../drivers/driver.js';
import { runBackup, type ChunkWorkerPool, type PipelineProgress } from '../pipeline/index.js';
import { GrpcChunkSink } from './grpc-chunk-sink.js';
import { ReadThrottle } from './read-throttle.js';

export class BackupJobError extends Error {
  constructor(
    readonly code: 'UNKNOWN_DRIVER' | 'INDEX_INCOMPLETE',
    message: string,
  ) {
    super(message);
    this.name = 'BackupJobError';
  }
}

export interface BackupJobHooks {
  phase(p: 'snapshotting' | 'transferring' | 'finalizing'): void;
  progress(p: PipelineProgress): void;
  note(level: 'info' | 'warn', message: string): void;
}

/**
 * One backup on the agent: open the point-in-time view, send what the hub lacks, send each
 * disk's index. Returns the snapshot still open: its bitmaps are settled only when the hub
 * says whether it committed.
 */
export async function runBackupJob(
  cmd: StartBackup,
  drivers: Map<string, Driver>,
  data: DataClient,
  hooks: BackupJobHooks,
  signal: AbortSignal,
  opts: {
    /** Cap on disk reads in bytes per second for the whole job; 0 reads as fast as it can. */
    readLimitBytesPerSecond?: number;
    /** The agent's hashing and compression threads, shared by its backups; else the run's own. */
    pool?: ChunkWorkerPool;
  } = {},
): Promise<{ snapshot: Snapshot; disks: DiskResult[] }> {
  const readLimitBytesPerSecond = opts.readLimitBytesPerSecond ?? 0;
  const t = cmd.target!;
  const driver = drivers.get(t.driver);
  if (!driver) throw new BackupJobError('UNKNOWN_DRIVER', `this agent has no driver "${t.driver}"`);
  hooks.phase('snapshotting');
  // The threads start while the snapshot is taken, not when the first chunk waits for them.
  opts.pool?.warm();
  const bases = Object.fromEntries(cmd.bases.map((b) => [b.diskName, b.bitmap]));
  const snapshot = await driver.open(
    { id: t.id, driver: t.driver, disks: t.disks.map((d) => ({ name: d.name, path: d.path })), options: cmd.targetOptions },
    { jobId: cmd.jobId, baseBitmaps: bases, log: hooks.note },
  );
  try {
    const parents = await Promise.all(
      snapshot.disks.map(async (view) => {
        if (!cmd.parentBackupId) return null;
        const idx = await data.getIndex(cmd.jobId, cmd.parentBackupId, view.name).catch((err: Error) => {
          hooks.note('warn', `disk ${view.name}: no parent index (${err.message}); reading it in full`);
          return null;
        });
        return idx && idx.diskSize === view.sizeBytes ? DigestList.fromBytes(idx.digests) : null;
      }),
    );
    hooks.phase('transferring');
    const sink = new GrpcChunkSink(data, cmd.jobId);
    let result;
    try {
      const throttle = readLimitBytesPerSecond > 0 ? new ReadThrottle(readLimitBytesPerSecond, signal) : null;
      const views = snapshot.disks.map((v) => throttle?.wrap(v) ?? v);
      result = await runBackup({ disks: views.map((view, i) => ({ view, parentDigests: parents[i]! })), sink, signal, onProgress: hooks.progress, pool: opts.pool });
      await sink.close();
    } catch (err) {
      sink.cancel();
      throw err;
    }
    hooks.phase('finalizing');
    for (const d of result.disks) {
      const missing = await data.putIndex(cmd.jobId, d.name, d.sizeBytes, d.digests.bytes);
      if (missing > 0) throw new BackupJobError('INDEX_INCOMPLETE', `disk ${d.name}: the hub lacks ${missing} chunks the index names`);
    }
    const views = new Map(snapshot.disks.map((v) => [v.name, v]));
    return {
      snapshot,
      disks: result.disks.map((d) => ({
        diskName: d.name,
        sizeBytes: d.sizeBytes,
        nextBitmap: views.get(d.name)?.nextBitmap ?? '',
        fullReadReason: d.fullReadReason ?? '',
        sha256: '',
      })),
    };
  } catch (err) {
    // The job's own error is what the hub must hear; a failed cleanup is logged beside it.
    await snapshot.abandoned().catch((e: Error) => hooks.note('warn', `could not restore the change bitmaps: ${e.message}`));
    await snapshot.release().catch((e: Error) => hooks.note('warn', `could not release the snapshot: ${e.message}`));
    throw err;
  }
}
