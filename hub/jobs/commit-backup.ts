import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { DiskResult } from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import type { BackupDisk } from '../db/entities/backup.js';
import type { Job, JobProgressCounters } from '../db/entities/job.js';
import { DigestList, RepositoryError, type Repository } from '../repository/index.js';
import type { JobStore } from './job-store.js';

export type CommitOutcome = { ok: true; job: Job; backupId: string } | { ok: false; code: 'COMMIT_FAILED' | 'DATA_LOSS'; message: string };

/**
 * Turns an agent's "done" into the hub's fact. The indexes the agent sent are staged (which
 * checks that every chunk they name is present), published, and then the backup row and the
 * job's move to succeeded are written in one transaction. If that transaction does not commit,
 * the published indexes are removed again, so no index exists without its row.
 */
export async function commitBackup(
  em: EntityManager,
  repo: Repository,
  jobs: JobStore,
  job: Job,
  results: DiskResult[],
  log: Logger,
  /** The job's last progress, held back from the database until now: written with the commit. */
  progress?: JobProgressCounters,
): Promise<CommitOutcome> {
  const conn = em.getConnection();
  const rows = await conn.execute<{ disk_name: string; disk_size: number; digests: Buffer }[]>(
    'select disk_name, disk_size, digests from job_disk_indexes where job_id = ? order by disk_name',
    [job.id],
  );
  const expected = ((job.params.target as { disks?: { name: string }[] } | undefined)?.disks ?? []).map((d) => d.name).sort();
  const got = rows.map((r) => r.disk_name);
  if (expected.join('\0') !== got.join('\0')) {
    return { ok: false, code: 'COMMIT_FAILED', message: `the agent sent indexes for [${got.join(', ')}] but the target has disks [${expected.join(', ')}]` };
  }
  const backupId = randomUUID();
  let staged;
  try {
    staged = await repo.stageBackup({
      backupId,
      createdAt: new Date(),
      disks: rows.map((r) => ({ diskId: r.disk_name, diskSize: Number(r.disk_size), digests: DigestList.fromBytes(r.digests) })),
    });
  } catch (err) {
    if (err instanceof RepositoryError && err.code === 'CHUNK_MISSING') return { ok: false, code: 'DATA_LOSS', message: err.message };
    throw err;
  }
  await repo.publishBackup(staged);
  const byName = new Map(results.map((r) => [r.diskName, r]));
  const disks: BackupDisk[] = staged.disks.map((d) => ({
    name: d.diskId,
    sizeBytes: d.diskSize,
    indexPath: d.relativePath,
    chunkCount: d.chunkCount,
    zeroChunks: d.zeroChunks,
    bitmap: byName.get(d.diskId)?.nextBitmap || null,
    fullReadReason: byName.get(d.diskId)?.fullReadReason || null,
  }));
  let committed: Job | null = null;
  try {
    committed = await em.transactional(async (tx) => {
      const done = await jobs.transition(job.id, 'succeeded', { backupId, progress }, tx);
      if (!done) return null; // cancelled or failed meanwhile: the backup must not exist
      await tx.execute(
        `insert into backups (id, job_id, agent_id, target_id, parent_backup_id, disks, bytes_total, created_at)
         values (?, ?, ?, ?, ?, ?::jsonb, ?, now())`,
        [backupId, job.id, job.agentId, job.targetId, (job.params.parentBackupId as string) || null, JSON.stringify(disks), disks.reduce((s, d) => s + d.sizeBytes, 0)],
      );
      await tx.execute('delete from job_disk_indexes where job_id = ?', [job.id]);
      return done;
    });
  } catch (err) {
    // The outcome of a failed COMMIT can be unknown: only discard if the row surely is not there.
    const exists = await conn.execute('select 1 from backups where id = ?', [backupId]).catch((e: unknown) => {
      log.error({ err: e, job_id: job.id, backup_id: backupId }, 'cannot tell whether the backup row exists; keeping its indexes for GC to judge');
      return null;
    });
    if (exists && exists.length === 0) await repo.discardBackup(backupId);
    throw err;
  }
  if (!committed) {
    await repo.discardBackup(backupId);
    const now = await jobs.get(job.id);
    return { ok: false, code: 'COMMIT_FAILED', message: `the job became ${now?.status ?? 'unknown'} before the commit` };
  }
  log.info({ job_id: job.id, agent_id: job.agentId, backup_id: backupId, disks: disks.length }, 'backup committed');
  return { ok: true, job: committed, backupId };
}
