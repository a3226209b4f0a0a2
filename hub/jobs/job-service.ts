import type { EntityManager } from '@mikro-orm/postgresql';
import { ImageFormat, type Command } from '../../shared/gen/backhaul/v1/agent.js';
import type { InventoryDisk, InventoryTarget } from '../db/entities/agent.js';
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

/** What a backup job needs to know of its target. */
export interface BackupTarget {
  agentId: string;
  /** The agent's own id for the target. */
  ref: string;
  name: string;
  driver: string;
  disks: InventoryDisk[];
  options: Record<string, string>;
}

interface BackupParams {
  target: InventoryTarget;
  targetOptions: Record<string, string>;
  parentBackupId: string | null;
  bases: { diskName: string; bitmap: string }[];
}

interface RestoreParams {
  backupId: string;
  destinations: RestoreDestination[];
}

/**
 * Creates backup and restore jobs. A job is created `queued`; the dispatcher sends it once its
 * agent is connected and has room. Everything the start command carries is in the job's params,
 * so the command can be rebuilt and re-sent, with the same id, after any restart.
 */
export class JobService {
  constructor(
    private readonly orm: Orm,
    /** Wakes the dispatcher, so a new job does not wait for its next tick. */
    private readonly kick: () => void = () => {},
  ) {}

  kickDispatcher(): void {
    this.kick();
  }

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  /** A backup of one target of an agent's inventory, outside any flow. */
  async startBackup(agentId: string, targetRef: string, targetOptions: Record<string, string> = {}): Promise<Job> {
    const em = this.em();
    const agents = await em.execute<{ inventory: InventoryTarget[] }[]>('select inventory from agents where id = ?', [agentId]);
    if (!agents[0]) throw new HubError('INVALID_ARGUMENT', `agent ${agentId} is not enrolled`);
    const t = agents[0].inventory.find((x) => x.id === targetRef);
    if (!t) throw new HubError('INVALID_ARGUMENT', `agent ${agentId} reports no target ${targetRef}`);
    const job = await this.createBackup(em, { agentId, ref: t.id, name: t.name, driver: t.driver, disks: t.disks, options: targetOptions }, null);
    this.kick();
    return job;
  }

  /**
   * Creates a queued backup job on `em` (the caller's transaction, for a flow's run). Its parent
   * is the target's newest backup, and its bases are that backup's change bitmaps.
   */
  async createBackup(em: EntityManager, target: BackupTarget, executionId: string | null): Promise<Job> {
    const parents = await em.execute<{ id: string; disks: BackupDisk[] }[]>(
      'select id, disks from backups where agent_id = ? and target_id = ? order by created_at desc limit 1',
      [target.agentId, target.ref],
    );
    const parent = parents[0] ?? null;
    const params: BackupParams = {
      target: { id: target.ref, name: target.name, driver: target.driver, disks: target.disks },
      targetOptions: target.options,
      parentBackupId: parent?.id ?? null,
      bases: (parent?.disks ?? []).filter((d) => d.bitmap).map((d) => ({ diskName: d.name, bitmap: d.bitmap! })),
    };
    return new JobStore(em).create({ kind: 'backup', agentId: target.agentId, targetId: target.ref, executionId, params: { ...params } }, em);
  }

  /** A restore of a backup's disks on an agent (by default the agent that made the backup). */
  async startRestore(backupId: string, agentId: string | undefined, destinations: RestoreDestination[]): Promise<Job> {
    const em = this.em();
    const rows = await em.execute<{ agent_id: string; target_id: string; disks: BackupDisk[] }[]>('select agent_id, target_id, disks from backups where id = ?', [backupId]);
    if (!rows[0]) throw new HubError('NOT_FOUND', `backup ${backupId} does not exist`);
    if (destinations.length === 0) throw new HubError('INVALID_ARGUMENT', 'a restore needs at least one disk', { field: 'disks' });
    for (const [i, d] of destinations.entries()) {
      if (!rows[0].disks.some((b) => b.name === d.diskName)) throw new HubError('INVALID_ARGUMENT', `backup ${backupId} has no disk ${d.diskName}`, { field: `disks.${i}.disk_name` });
    }
    const on = agentId ?? rows[0].agent_id;
    const agent = await em.execute('select 1 from agents where id = ?', [on]);
    if (agent.length === 0) throw new HubError('INVALID_ARGUMENT', `agent ${on} is not enrolled`, { field: 'agent_id' });
    const params: RestoreParams = { backupId, destinations };
    const job = await new JobStore(em).create({ kind: 'restore', agentId: on, targetId: rows[0].target_id, params: { ...params } });
    this.kick();
    return job;
  }

  /** A chunk failed its digest check on upload: the job fails with DATA_LOSS. */
  async failWithDataLoss(jobId: string, message: string): Promise<Job | null> {
    return new JobStore(this.em()).transition(jobId, 'failed', { errorCode: 'DATA_LOSS', errorMessage: message });
  }

  /**
   * Cancels a job. A queued job is cancelled at once; a dispatched or running one goes to
   * cancelling, the dispatcher tells its agent to abort and clean up, and the agent's final
   * report (or, if the agent is gone, the monitor after the grace) ends it cancelled.
   */
  async cancel(jobId: string, reason = 'cancelled by an operator'): Promise<Job | null> {
    const jobs = new JobStore(this.em());
    const queued = await jobs.transition(jobId, 'cancelled', { errorCode: 'CANCELLED', errorMessage: `${reason} before it started`, onlyFrom: ['queued'] });
    if (queued) return queued;
    const job = await jobs.transition(jobId, 'cancelling');
    if (job) this.kick();
    return job ?? jobs.get(jobId);
  }
}

/** The start command of an agent job, rebuilt from its params: the same bytes on every re-send. */
export function startCommandOf(job: Job): NonNullable<Command['kind']> {
  if (job.kind === 'backup') {
    const p = job.params as unknown as BackupParams;
    return {
      $case: 'startBackup',
      value: { jobId: job.id, target: p.target, targetOptions: p.targetOptions ?? {}, parentBackupId: p.parentBackupId ?? '', bases: p.bases ?? [] },
    };
  }
  if (job.kind === 'restore') {
    const p = job.params as unknown as RestoreParams;
    return {
      $case: 'startRestore',
      value: {
        jobId: job.id,
        backupId: p.backupId,
        disks: p.destinations.map((d) => ({
          diskName: d.diskName,
          destinationPath: d.path,
          format: d.format === 'qcow2' ? ImageFormat.IMAGE_FORMAT_QCOW2 : ImageFormat.IMAGE_FORMAT_RAW,
          create: d.create,
        })),
      },
    };
  }
  throw new Error(`a ${job.kind} job runs on the hub and has no agent command`);
}
