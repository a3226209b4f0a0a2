import type { EntityManager } from '@mikro-orm/postgresql';
import { ImageFormat, type Command } from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import type { SessionRegistry } from '../agents/registry.js';
import type { InventoryTarget } from '../db/entities/agent.js';
import type { BackupDisk } from '../db/entities/backup.js';
import type { Job } from '../db/entities/job.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import { JobStore } from './job-store.js';

export interface RestoreDestination {
  diskName: string;
  path: string;
  format: 'raw' | 'qcow2';
  create: boolean;
}

/**
 * Creates backup and restore jobs and sends them to their agent. A job is dispatched only to an
 * agent whose stream this hub holds; a refused or unacknowledged command fails the job with
 * DISPATCH_FAILED and the agent's reason. (Queueing for offline agents and retries arrive with
 * the lifecycle's dispatcher.)
 */
export class JobService {
  constructor(
    private readonly orm: Orm,
    private readonly registry: SessionRegistry,
    private readonly log: Logger,
    private readonly ackTimeoutMs = 10_000,
  ) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  async startBackup(agentId: string, targetId: string, targetOptions: Record<string, string> = {}): Promise<Job> {
    const em = this.em();
    const conn = em.getConnection();
    const agents = await conn.execute<{ inventory: InventoryTarget[] }[]>('select inventory from agents where id = ?', [agentId]);
    if (!agents[0]) throw new HubError('INVALID_ARGUMENT', `agent ${agentId} is not enrolled`);
    const target = agents[0].inventory.find((t) => t.id === targetId);
    if (!target) throw new HubError('INVALID_ARGUMENT', `agent ${agentId} reports no target ${targetId}`);
    const parents = await conn.execute<{ id: string; disks: BackupDisk[] }[]>(
      'select id, disks from backups where agent_id = ? and target_id = ? order by created_at desc limit 1',
      [agentId, targetId],
    );
    const parent = parents[0] ?? null;
    const bases = (parent?.disks ?? []).filter((d) => d.bitmap).map((d) => ({ diskName: d.name, bitmap: d.bitmap! }));
    const jobs = new JobStore(em);
    const job = await jobs.create({
      kind: 'backup',
      agentId,
      targetId,
      params: { target, targetOptions, parentBackupId: parent?.id ?? null, bases },
    });
    await this.dispatch(jobs, { ...job, agentId }, {
      $case: 'startBackup',
      value: {
        jobId: job.id,
        target: { id: target.id, name: target.name, driver: target.driver, disks: target.disks },
        targetOptions,
        parentBackupId: parent?.id ?? '',
        bases,
      },
    });
    return (await jobs.get(job.id))!;
  }

  async startRestore(backupId: string, agentId: string, destinations: RestoreDestination[]): Promise<Job> {
    const em = this.em();
    const rows = await em.getConnection().execute<{ target_id: string; disks: BackupDisk[] }[]>('select target_id, disks from backups where id = ?', [backupId]);
    if (!rows[0]) throw new HubError('INVALID_ARGUMENT', `backup ${backupId} does not exist`);
    for (const d of destinations) {
      if (!rows[0].disks.some((b) => b.name === d.diskName)) throw new HubError('INVALID_ARGUMENT', `backup ${backupId} has no disk ${d.diskName}`);
    }
    const jobs = new JobStore(em);
    const job = await jobs.create({ kind: 'restore', agentId, targetId: rows[0].target_id, params: { backupId, destinations } });
    await this.dispatch(jobs, { ...job, agentId }, {
      $case: 'startRestore',
      value: {
        jobId: job.id,
        backupId,
        disks: destinations.map((d) => ({
          diskName: d.diskName,
          destinationPath: d.path,
          format: d.format === 'qcow2' ? ImageFormat.IMAGE_FORMAT_QCOW2 : ImageFormat.IMAGE_FORMAT_RAW,
          create: d.create,
        })),
      },
    });
    return (await jobs.get(job.id))!;
  }

  private async dispatch(jobs: JobStore, job: Job & { agentId: string }, kind: NonNullable<Command['kind']>): Promise<void> {
    const log = this.log.child({ job_id: job.id, agent_id: job.agentId });
    if (!this.registry.connected(job.agentId)) {
      await jobs.transition(job.id, 'failed', { errorCode: 'DISPATCH_FAILED', errorMessage: 'the agent is not connected to this hub' });
      return;
    }
    await jobs.transition(job.id, 'dispatched');
    try {
      const ack = await this.registry.sendCommand(job.agentId, kind, this.ackTimeoutMs, job.commandId);
      if (!ack.accepted) {
        await jobs.transition(job.id, 'failed', { errorCode: 'DISPATCH_FAILED', errorMessage: `${ack.errorCode}: ${ack.message}` });
        log.warn({ code: ack.errorCode, reason: ack.message }, 'agent refused the job');
      }
    } catch (err) {
      await jobs.transition(job.id, 'failed', { errorCode: 'DISPATCH_FAILED', errorMessage: (err as Error).message });
      log.warn({ err }, 'job not acknowledged');
    }
  }

  /** A chunk failed its digest check on upload: the job fails with DATA_LOSS and the agent aborts it. */
  async failWithDataLoss(jobId: string, message: string): Promise<void> {
    const jobs = new JobStore(this.em());
    const job = await jobs.transition(jobId, 'failed', { errorCode: 'DATA_LOSS', errorMessage: message });
    if (!job?.agentId) return;
    this.log.error({ job_id: jobId, agent_id: job.agentId, reason: message }, 'job failed: data loss on upload');
    this.tellAgentToAbort(job.agentId, jobId, `DATA_LOSS: ${message}`);
  }

  /**
   * Cancels an agent job. A queued job is cancelled at once; a dispatched or running one goes to
   * cancelling and its agent is told to abort and clean up; its final report ends it cancelled.
   * Returns the job as it now is, or null if it does not exist.
   */
  async cancel(jobId: string): Promise<Job | null> {
    const jobs = new JobStore(this.em());
    const queued = await jobs.transition(jobId, 'cancelled', { errorCode: 'CANCELLED', errorMessage: 'cancelled by an operator before it started', onlyFrom: ['queued'] });
    if (queued) return queued;
    const job = await jobs.transition(jobId, 'cancelling');
    if (job?.agentId) this.tellAgentToAbort(job.agentId, jobId, 'cancelled by an operator');
    return job ?? jobs.get(jobId);
  }

  private tellAgentToAbort(agentId: string, jobId: string, reason: string): void {
    this.registry
      .sendCommand(agentId, { $case: 'abortJob', value: { jobId, reason } })
      .then(async (ack) => {
        // The agent does not hold the job (it restarted, and cleaned up at start): no final
        // report will come, so a cancelling job ends here.
        if (ack.errorCode === 'JOB_NOT_HELD') {
          await new JobStore(this.em()).transition(jobId, 'cancelled', { errorCode: 'CANCELLED', errorMessage: reason, onlyFrom: ['cancelling'] });
        }
      })
      .catch((err: unknown) => this.log.warn({ err, job_id: jobId, agent_id: agentId }, 'abort not acknowledged; the agent cleans up when it reconnects'));
  }
}
