import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { HubError } from '../errors.js';
import { Job, type JobKind, type JobProgressCounters } from '../db/entities/job.js';
import { notifyJob } from '../events/notify.js';
import { appendJobLog } from './job-log.js';
import { settleExecution } from '../lifecycle/execution-settlement.js';
import { phaseRank, sourcesOf, TERMINAL, type JobErrorCode, type JobPhaseName, type JobStatusName } from './job-state.js';

type Row = Record<string, unknown>;

/** A timestamp column of a raw row: the driver may hand it back as a string; the entity holds Dates. */
function date(v: unknown): Date | null {
  return v === null || v === undefined ? null : v instanceof Date ? v : new Date(v as string);
}

/** Maps a jobs row (snake_case, from raw SQL) to the entity's shape. */
export function jobFromRow(r: Row): Job {
  const j = new Job();
  Object.assign(j, {
    id: r.id,
    kind: r.kind,
    agentId: r.agent_id,
    targetId: r.target_id,
    status: r.status,
    phase: r.phase,
    params: r.params,
    commandId: r.command_id,
    progress: r.progress,
    lastSeq: Number(r.last_seq),
    errorCode: r.error_code,
    errorMessage: r.error_message,
    backupId: r.backup_id,
    result: r.result,
    createdAt: date(r.created_at),
    startedAt: date(r.started_at),
    lastEventAt: date(r.last_event_at),
    completedAt: date(r.completed_at),
    executionId: r.execution_id ?? null,
    dispatchAttempts: Number(r.dispatch_attempts ?? 0),
    dispatchedAt: date(r.dispatched_at),
    ackedAt: date(r.acked_at),
    abortSentAt: date(r.abort_sent_at),
    stalledAt: date(r.stalled_at),
    stallReason: r.stall_reason ?? null,
  });
  return j;
}

/**
 * Every write to a job's status goes through here, as a guarded update: it applies only if the
 * job is in a status the state machine allows the move from. The caller learns whether it won.
 */
export class JobStore {
  constructor(private readonly em: EntityManager) {}

  /**
   * Creates a queued job. `failWith` records a job that could not even be queued (its target is
   * busy) as failed at once, so an execution still accounts for it.
   */
  async create(
    p: {
      kind: JobKind;
      agentId: string | null;
      targetId: string | null;
      params: Record<string, unknown>;
      executionId?: string | null;
      failWith?: { code: JobErrorCode; message: string };
    },
    em: EntityManager = this.em,
  ): Promise<Job> {
    const f = p.failWith ?? null;
    const rows = await em
      .execute<Row[]>(
        `insert into jobs (id, kind, agent_id, target_id, status, params, command_id, execution_id, error_code, error_message, created_at, completed_at)
         values (?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?, now(), case when ? then now() end) returning *`,
        [randomUUID(), p.kind, p.agentId, p.targetId, f ? 'failed' : 'queued', JSON.stringify(p.params), randomUUID(), p.executionId ?? null, f?.code ?? null, f?.message ?? null, f !== null],
      )
      .catch((err: unknown) => {
        if ((err as { constraint?: string }).constraint === 'jobs_one_live_per_target') {
          throw new HubError('TARGET_BUSY', `target ${p.targetId} of agent ${p.agentId} already has a job running`);
        }
        throw err;
      });
    const job = jobFromRow(rows[0]!);
    await notifyJob(em, job.id, 'job.status');
    await appendJobLog(em, job.id, f ? 'warn' : 'info', f ? `${job.kind} job not started: ${f.code}: ${f.message}` : `${job.kind} job queued`);
    return job;
  }

  async get(id: string, em: EntityManager = this.em): Promise<Job | null> {
    const rows = await em.execute<Row[]>('select * from jobs where id = ?', [id]);
    return rows[0] ? jobFromRow(rows[0]) : null;
  }

  /**
   * Moves a job to `to` if the state machine allows it from its current status; null if not.
   * A move to a terminal status settles the job's execution in the same transaction, so the
   * execution's counters and status can never disagree with its job rows.
   */
  async transition(
    id: string,
    to: JobStatusName,
    patch: { errorCode?: JobErrorCode; errorMessage?: string; backupId?: string; result?: unknown; progress?: JobProgressCounters; onlyFrom?: JobStatusName[] } = {},
    em: EntityManager = this.em,
  ): Promise<Job | null> {
    if (!TERMINAL.has(to)) return this.update(id, to, patch, em);
    return em.transactional(async (tx) => {
      const job = await this.update(id, to, patch, tx);
      if (!job) return null;
      const why = job.errorCode ? `: ${job.errorCode}: ${job.errorMessage ?? ''}` : '';
      await appendJobLog(tx, job.id, to === 'succeeded' ? 'info' : 'warn', `job ${to}${why}`);
      if (job.executionId) await settleExecution(tx, job.executionId);
      return job;
    });
  }

  private async update(
    id: string,
    to: JobStatusName,
    patch: { errorCode?: JobErrorCode; errorMessage?: string; backupId?: string; result?: unknown; progress?: JobProgressCounters; onlyFrom?: JobStatusName[] },
    em: EntityManager,
  ): Promise<Job | null> {
    const terminal = TERMINAL.has(to);
    const from = sourcesOf(to).filter((s) => !patch.onlyFrom || patch.onlyFrom.includes(s));
    // A job that ends without success drops the indexes its agent sent, in the same statement.
    const rows = await em.execute<Row[]>(
      `with t as (
         update jobs set status = ?,
           error_code = coalesce(?, error_code), error_message = coalesce(?, error_message),
           backup_id = coalesce(?, backup_id), result = coalesce(?::jsonb, result), progress = coalesce(?::jsonb, progress),
           started_at = case when ? in ('running') then coalesce(started_at, now()) else started_at end,
           dispatched_at = case when ? = 'dispatched' then now() else dispatched_at end,
           completed_at = case when ? then now() else null end
         where id = ? and status = any(?::text[]) returning *),
       d as (delete from job_disk_indexes where job_id in (select id from t where status in ('failed', 'cancelled')))
       select * from t`,
      [
        to,
        patch.errorCode ?? null,
        patch.errorMessage ?? null,
        patch.backupId ?? null,
        patch.result === undefined ? null : JSON.stringify(patch.result),
        patch.progress === undefined ? null : JSON.stringify(patch.progress),
        to,
        to,
        terminal,
        id,
        `{${from.join(',')}}`,
      ],
    );
    if (!rows[0]) return null;
    await notifyJob(em, id, 'job.status');
    return jobFromRow(rows[0]);
  }

  /**
   * Applies a progress report with sequence number `seq`: only to a live job, only if newer than
   * the last applied event. Counters never go backwards and the phase only moves forward, so a
   * late or reordered report cannot undo a newer one.
   */
  async applyProgress(job: Job, seq: number, phase: JobPhaseName | null, counters: JobProgressCounters): Promise<Job | null> {
    // `job` is the row the caller just read; the guarded update below rechecks what matters.
    if (TERMINAL.has(job.status) || seq <= job.lastSeq) return null;
    const id = job.id;
    const merged = mergeCounters(job.progress, counters);
    const nextPhase = phaseRank(phase) > phaseRank(job.phase) ? phase : job.phase;
    const rows = await this.em.execute<Row[]>(
      `update jobs set progress = ?::jsonb, phase = ?, last_seq = ?, last_event_at = now(), stalled_at = null, stall_reason = null,
         status = case when status = 'dispatched' then 'running' else status end,
         started_at = coalesce(started_at, now())
       where id = ? and last_seq < ? and status in ('dispatched', 'running', 'cancelling') returning *`,
      [JSON.stringify(merged), nextPhase, seq, id, seq],
    );
    if (!rows[0]) return null;
    const applied = jobFromRow(rows[0]);
    await notifyJob(this.em, id, applied.status !== job.status ? 'job.status' : applied.phase !== job.phase ? 'job.phase' : 'job.progress');
    return applied;
  }

  /** Replaces a live job's progress counters (hub jobs report their own progress). */
  async setProgress(id: string, counters: JobProgressCounters): Promise<void> {
    const rows = await this.em.execute(
      "update jobs set progress = ?::jsonb, last_event_at = now() where id = ? and status in ('dispatched', 'running', 'cancelling') returning id",
      [JSON.stringify(counters), id],
    );
    if (rows.length > 0) await notifyJob(this.em, id, 'job.progress');
  }

  /** Records that an event with this sequence number was seen, without other changes. */
  async bumpSeq(id: string, seq: number, em: EntityManager = this.em): Promise<void> {
    await em.execute('update jobs set last_seq = greatest(last_seq, ?), last_event_at = now(), stalled_at = null, stall_reason = null where id = ?', [seq, id]);
  }
}

/** Field-wise maximum: a zero or smaller value in a later report never wipes good data. */
export function mergeCounters(prev: JobProgressCounters | null, next: JobProgressCounters): JobProgressCounters {
  if (!prev) return next;
  const max = (a: number, b: number) => Math.max(a, b);
  return {
    bytesTotal: max(prev.bytesTotal, next.bytesTotal),
    bytesDone: max(prev.bytesDone, next.bytesDone),
    bytesRead: max(prev.bytesRead, next.bytesRead),
    bytesTransferred: max(prev.bytesTransferred, next.bytesTransferred),
    bytesSent: max(prev.bytesSent, next.bytesSent),
    bytesReused: max(prev.bytesReused, next.bytesReused),
    bytesZero: max(prev.bytesZero, next.bytesZero),
    // Rate, ETA and busy-ness describe the latest moment, not a running total.
    rateBytesPerSecond: next.rateBytesPerSecond,
    etaSeconds: next.etaSeconds,
    busy: next.busy,
  };
}
