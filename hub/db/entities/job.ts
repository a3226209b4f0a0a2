import { BigIntType, EntitySchema } from '@mikro-orm/core';
import type { JobErrorCode, JobPhaseName, JobStatusName } from '../../jobs/job-state.js';

export type JobKind = 'backup' | 'restore' | 'verify' | 'prune' | 'gc';

/** Jobs the hub runs itself, on the repository. */
export const HUB_JOB_KINDS: readonly JobKind[] = ['verify', 'prune', 'gc'];

/** Counters from the agent's latest progress report; they only grow. */
export interface JobProgressCounters {
  bytesTotal: number;
  bytesDone: number;
  bytesRead: number;
  bytesTransferred: number;
  bytesSent: number;
  bytesReused: number;
  bytesZero: number;
  rateBytesPerSecond: number;
  etaSeconds: number;
  busy: { sourceRead: number; hashCompress: number; network: number; hubWrite: number };
}

/** One unit of work: a backup or restore of one target on an agent, or a repository job on the hub. */
export class Job {
  id!: string;
  kind!: JobKind;
  agentId: string | null = null;
  targetId: string | null = null;
  status!: JobStatusName;
  phase: JobPhaseName | null = null;
  /** What the command carries: target, options, parent, destinations. */
  params!: Record<string, unknown>;
  commandId!: string;
  progress: JobProgressCounters | null = null;
  /** Highest agent event sequence number applied to this job. */
  lastSeq = 0;
  errorCode: JobErrorCode | null = null;
  errorMessage: string | null = null;
  /** For a backup: the restore point it committed. For a restore: the backup it read. */
  backupId: string | null = null;
  /** Restore: per disk SHA-256 of the written image. */
  result: Record<string, unknown> | null = null;
  createdAt!: Date;
  startedAt: Date | null = null;
  lastEventAt: Date | null = null;
  completedAt: Date | null = null;
  /** The execution this job belongs to; null for jobs started outside a flow. */
  executionId: string | null = null;
  /** How many times the start command was sent; it is re-sent with the same id until acknowledged. */
  dispatchAttempts = 0;
  dispatchedAt: Date | null = null;
  ackedAt: Date | null = null;
  abortSentAt: Date | null = null;
  /** Set while the job is silent (agent gone, or no report within the stall timeout). */
  stalledAt: Date | null = null;
  stallReason: string | null = null;
}

export const JobSchema = new EntitySchema<Job>({
  class: Job,
  tableName: 'jobs',
  properties: {
    id: { type: 'uuid', primary: true },
    kind: { type: 'text' },
    agentId: { type: 'uuid', nullable: true },
    targetId: { type: 'text', nullable: true },
    status: { type: 'text' },
    phase: { type: 'text', nullable: true },
    params: { type: 'json' },
    commandId: { type: 'uuid' },
    progress: { type: 'json', nullable: true },
    lastSeq: { type: new BigIntType('number'), default: 0 },
    errorCode: { type: 'text', nullable: true },
    errorMessage: { type: 'text', nullable: true },
    backupId: { type: 'uuid', nullable: true },
    result: { type: 'json', nullable: true },
    createdAt: { type: 'datetime' },
    startedAt: { type: 'datetime', nullable: true },
    lastEventAt: { type: 'datetime', nullable: true },
    completedAt: { type: 'datetime', nullable: true },
    executionId: { type: 'uuid', nullable: true },
    dispatchAttempts: { type: 'integer', default: 0 },
    dispatchedAt: { type: 'datetime', nullable: true },
    ackedAt: { type: 'datetime', nullable: true },
    abortSentAt: { type: 'datetime', nullable: true },
    stalledAt: { type: 'datetime', nullable: true },
    stallReason: { type: 'text', nullable: true },
  },
});
