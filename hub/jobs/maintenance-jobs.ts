import pg from 'pg';
import type { Logger } from '../../shared/logger.js';
import type { BackupDisk } from '../db/entities/backup.js';
import type { Job, JobKind, JobProgressCounters } from '../db/entities/job.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import { selectForPrune, type PrunePolicy, type Repository } from '../repository/index.js';
import { removeBackup } from './backup-removal.js';
import { JobStore } from './job-store.js';

/** Advisory lock key: one garbage collection at a time across every hub on the database. */
const GC_LOCK_KEY = 0x62616367; // "bacg"

const counters = (done: number, total: number): JobProgressCounters => ({
  bytesTotal: total,
  bytesDone: done,
  bytesRead: done,
  bytesTransferred: 0,
  bytesSent: 0,
  bytesReused: 0,
  bytesZero: 0,
  rateBytesPerSecond: 0,
  etaSeconds: 0,
  busy: { sourceRead: 0, hashCompress: 0, network: 0, hubWrite: 0 },
});

/**
 * Verify, prune and garbage collection, run by the hub as jobs: each gets a jobs row that moves
 * queued → running → succeeded | failed, with progress (at most one write a second) and a result.
 * start*() returns the job at once; `done` resolves when it has ended.
 */
export class MaintenanceJobs {
  constructor(
    private readonly orm: Orm,
    private readonly repo: Repository,
    private readonly databaseUrl: string,
    private readonly log: Logger,
  ) {}

  /** Re-reads every chunk of a backup; fails with DATA_LOSS naming the corrupt and missing chunks. */
  startVerify(backupId: string): Promise<{ job: Job; done: Promise<Job> }> {
    return this.start('verify', { backupId }, async (jobs, job, report) => {
      const disks = await this.backupDisks(backupId);
      const result = await this.repo.verifyBackup(
        disks.map((d) => this.repo.resolveIndexPath(d.indexPath)),
        { onProgress: (p) => report(p.bytesDone, p.bytesTotal) },
      );
      const summary = {
        chunksChecked: result.chunksChecked,
        bytesChecked: result.bytesChecked,
        corrupt: result.corrupt.map((c) => c.digest),
        missing: result.missing.map((c) => c.digest),
        badIndexes: result.badIndexes.length,
      };
      if (result.ok) return jobs.transition(job.id, 'succeeded', { result: summary });
      return jobs.transition(job.id, 'failed', {
        result: summary,
        errorCode: 'DATA_LOSS',
        errorMessage: `${summary.corrupt.length} corrupt and ${summary.missing.length} missing chunks, ${summary.badIndexes} bad indexes; corrupt: ${summary.corrupt.slice(0, 10).join(', ')}`,
      });
    });
  }

  /**
   * Removes the backups of one target that the policy does not keep. A backup that a live
   * restore or verify uses is kept whatever the policy says. Chunks are freed by GC later.
   */
  startPrune(agentId: string, targetId: string, policy: PrunePolicy, timeZone?: string, afterExecutionId?: string): Promise<{ job: Job; done: Promise<Job> }> {
    const params = { agentId, targetId, policy, timeZone: timeZone ?? null, afterExecutionId: afterExecutionId ?? null };
    return this.start('prune', params, async (jobs, job, report) => {
      const em = this.orm.em.fork();
      const rows = await em.execute<{ id: string; created_at: Date }[]>('select id, created_at from backups where agent_id = ? and target_id = ? order by created_at', [agentId, targetId]);
      const decision = selectForPrune(rows.map((r) => ({ id: r.id, createdAt: new Date(r.created_at) })), policy, new Date(), timeZone ? { timeZone } : {});
      const removed: string[] = [];
      const inUse: string[] = [];
      for (const [i, b] of decision.remove.entries()) {
        const outcome = await removeBackup(em, this.repo, b.id);
        if (outcome === 'in_use') inUse.push(b.id);
        if (outcome !== 'removed') continue;
        removed.push(b.id);
        report(i + 1, decision.remove.length);
      }
      this.log.info({ job_id: job.id, removed: removed.length, kept: decision.keep.length, in_use: inUse.length }, 'prune done');
      return jobs.transition(job.id, 'succeeded', { result: { backupsRemoved: removed.length, removed, kept: decision.keep.map((k) => k.backup.id), keptInUse: inUse } });
    });
  }

  /** Mark and sweep: frees chunks no backup names that are older than the grace. */
  startGc(graceMs: number): Promise<{ job: Job; done: Promise<Job> }> {
    return this.start('gc', { graceMs }, async (jobs, job, report) => {
      const lock = new pg.Client({ connectionString: this.databaseUrl });
      await lock.connect();
      try {
        const got = await lock.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [GC_LOCK_KEY]);
        if (!got.rows[0]!.ok) return jobs.transition(job.id, 'failed', { errorCode: 'GC_BUSY', errorMessage: 'another garbage collection is running' });
        const rows = await this.orm.em.fork().getConnection().execute<{ disks: BackupDisk[] }[]>('select disks from backups');
        const live = rows.flatMap((r) => r.disks.map((d) => this.repo.resolveIndexPath(d.indexPath)));
        const result = await this.repo.collectGarbage({
          liveIndexPaths: live,
          graceMs,
          allowEmptyLiveSet: live.length === 0,
          onProgress: (p) => report(p.phase === 'mark' ? p.done : p.total + p.done, 2 * Math.max(p.total, 1)),
        });
        this.log.info({ job_id: job.id, removed_chunks: result.removedChunks, removed_bytes: result.removedBytes }, 'garbage collected');
        return jobs.transition(job.id, 'succeeded', { result });
      } finally {
        await lock.end();
      }
    });
  }

  private async backupDisks(backupId: string): Promise<BackupDisk[]> {
    const rows = await this.orm.em.fork().getConnection().execute<{ disks: BackupDisk[] }[]>('select disks from backups where id = ?', [backupId]);
    if (!rows[0]) throw new HubError('INVALID_ARGUMENT', `backup ${backupId} does not exist`);
    return rows[0].disks;
  }

  private async start(
    kind: JobKind,
    params: Record<string, unknown>,
    body: (jobs: Pick<JobStore, 'transition'>, job: Job, report: (done: number, total: number) => void) => Promise<Job | null>,
  ): Promise<{ job: Job; done: Promise<Job> }> {
    if (kind === 'verify') await this.backupDisks(params.backupId as string);
    const jobs = new JobStore(this.orm.em.fork());
    const created = await jobs.create({ kind, agentId: null, targetId: null, params });
    // Hub jobs need no dispatch: they go straight to running in this process.
    await jobs.transition(created.id, 'dispatched');
    const job = (await jobs.transition(created.id, 'running'))!;
    const log = this.log.child({ job_id: job.id, kind });
    let last = 0;
    // Progress writes run in order, and the job's end waits for them: its final counters are
    // written while it is still live, or they would be refused and lost.
    let writes = Promise.resolve();
    const report = (done: number, total: number) => {
      if (Date.now() - last < 1000 && done < total) return;
      last = Date.now();
      writes = writes.then(() => jobs.setProgress(job.id, counters(done, total))).catch((err: unknown) => log.warn({ err }, 'progress not saved'));
    };
    const ending: Pick<JobStore, 'transition'> = { transition: async (...args) => (await writes, jobs.transition(...args)) };
    const done = body(ending, job, report)
      .catch(async (err: unknown) => {
        log.error({ err }, 'hub job failed');
        return jobs.transition(job.id, 'failed', { errorCode: 'HUB_ERROR', errorMessage: (err as Error).message });
      })
      .then(async (j) => j ?? (await jobs.get(job.id))!);
    return { job, done };
  }
}
