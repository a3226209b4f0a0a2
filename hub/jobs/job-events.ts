import type { EntityManager } from '@mikro-orm/postgresql';
import { EventDisposition, JobPhase, JobStatus, type EventAck, type JobEvent, type JobFinal } from '../../shared/gen/backhaul/v1/agent.js';
import type { Job, JobProgressCounters } from '../db/entities/job.js';
import { appendJobLog } from './job-log.js';
import { ProgressCoalescer } from './progress-coalescer.js';
import { isUuid } from '../../shared/uuid.js';
import type { Logger } from '../../shared/logger.js';
import type { Orm } from '../db/orm.js';
import type { Repository } from '../repository/index.js';
import { commitBackup } from './commit-backup.js';
import { TERMINAL, type JobPhaseName, type JobStatusName } from './job-state.js';
import { JobStore, mergeCounters } from './job-store.js';


const PHASES: Record<number, JobPhaseName | null> = {
  [JobPhase.JOB_PHASE_SNAPSHOTTING]: 'snapshotting',
  [JobPhase.JOB_PHASE_TRANSFERRING]: 'transferring',
  [JobPhase.JOB_PHASE_FINALIZING]: 'finalizing',
};

export const STATUS_TO_PROTO: Record<JobStatusName, JobStatus> = {
  queued: JobStatus.JOB_STATUS_QUEUED,
  dispatched: JobStatus.JOB_STATUS_DISPATCHED,
  running: JobStatus.JOB_STATUS_RUNNING,
  cancelling: JobStatus.JOB_STATUS_CANCELLING,
  succeeded: JobStatus.JOB_STATUS_SUCCEEDED,
  failed: JobStatus.JOB_STATUS_FAILED,
  cancelled: JobStatus.JOB_STATUS_CANCELLED,
};

export interface JobEventHooks {
  /** A final report was handled: a slot on the agent may be free. */
  jobEnded(): void;
  /** The agent reports on a job that is terminal here: tell it to abort and clean up. */
  abortOnAgent(agentId: string, jobId: string, reason: string): void;
  /** A backup was committed: the job succeeded after running this long. */
  backupCommitted?(seconds: number): void;
}

/**
 * Applies agent events to jobs. Late, duplicate and reordered events end in the same state
 * as in-order ones: anything about a terminal job, or not newer than the last applied one, is
 * acknowledged and ignored; anything about another agent's job is refused.
 */
export class JobEvents {
  constructor(
    private readonly orm: Orm,
    private readonly repo: Repository,
    private readonly log: Logger,
    private readonly hooks: JobEventHooks = { jobEnded: () => {}, abortOnAgent: () => {} },
    progressWriteIntervalMs = 0,
  ) {
    this.coalescer = new ProgressCoalescer(
      progressWriteIntervalMs,
      async (jobId, p) => {
        const store = new JobStore(this.orm.em.fork());
        const job = await store.get(jobId);
        if (job && !TERMINAL.has(job.status)) await store.applyProgress(job, p.seq, p.phase, p.counters);
      },
      (jobId, err) => this.log.warn({ err, job_id: jobId }, 'held progress not written'),
    );
  }

  private readonly coalescer: ProgressCoalescer;

  async handle(agentId: string, ev: JobEvent): Promise<EventAck> {
    const em = this.orm.em.fork();
    const jobs = new JobStore(em);
    const ack = (disposition: EventDisposition, status: JobStatusName | null, message = ''): EventAck => ({
      seq: ev.seq,
      disposition,
      message,
      jobStatus: status ? STATUS_TO_PROTO[status] : JobStatus.JOB_STATUS_UNSPECIFIED,
    });
    const job = isUuid(ev.jobId) ? await jobs.get(ev.jobId) : null;
    if (!job) return ack(EventDisposition.EVENT_DISPOSITION_REFUSED, null, `job ${ev.jobId} is not known to this hub`);
    if (job.agentId !== agentId) return ack(EventDisposition.EVENT_DISPOSITION_REFUSED, null, `job ${ev.jobId} belongs to another agent`);
    if (TERMINAL.has(job.status)) {
      // Terminal is final. An agent still reporting progress still runs the job: stop it.
      if (ev.event?.$case === 'progress') this.hooks.abortOnAgent(agentId, job.id, `the job is already ${job.status}`);
      return ack(EventDisposition.EVENT_DISPOSITION_IGNORED, job.status, `job is already ${job.status}`);
    }
    const log = this.log.child({ job_id: job.id, agent_id: agentId });
    const e = ev.event;
    if (e?.$case === 'progress') {
      if (ev.seq <= job.lastSeq) return ack(EventDisposition.EVENT_DISPOSITION_IGNORED, job.status, 'duplicate or older event');
      const p = e.value;
      const report = this.coalescer.offer(job, { seq: ev.seq, phase: PHASES[p.phase] ?? null, counters: {
        bytesTotal: p.bytesTotal,
        bytesDone: p.bytesDone,
        bytesRead: p.bytesRead,
        bytesTransferred: p.bytesTransferred,
        bytesSent: p.bytesSent,
        bytesReused: p.bytesReused,
        bytesZero: p.bytesZero,
        rateBytesPerSecond: p.rateBytesPerSecond,
        etaSeconds: p.etaSeconds,
        busy: {
          sourceRead: p.busy?.sourceRead ?? 0,
          hashCompress: p.busy?.hashCompress ?? 0,
          network: p.busy?.network ?? 0,
          hubWrite: p.busy?.hubWrite ?? 0,
        },
      } }, p.note !== '');
      // Held back to spare the database; it is written within the coalescing interval.
      if (!report) return ack(EventDisposition.EVENT_DISPOSITION_APPLIED, job.status);
      const applied = await jobs.applyProgress(job, report.seq, report.phase, report.counters);
      if (p.note) {
        log.info({ note: p.note }, 'job note');
        await appendJobLog(em, job.id, 'info', p.note);
      }
      if (applied && applied.phase !== job.phase) await appendJobLog(em, job.id, 'info', `phase: ${applied.phase}`);
      return applied ? ack(EventDisposition.EVENT_DISPOSITION_APPLIED, applied.status) : ack(EventDisposition.EVENT_DISPOSITION_IGNORED, job.status, 'not applied');
    }
    if (e?.$case === 'final') {
      // The last progress held back is written with the job's end: its counters as the agent last told them.
      const held = this.coalescer.take(job.id);
      const progress = held ? mergeCounters(job.progress, held.counters) : undefined;
      const settled = await this.final(em, jobs, job, ev, e.value, log, ack, progress);
      this.hooks.jobEnded();
      return settled;
    }
    return ack(EventDisposition.EVENT_DISPOSITION_REFUSED, job.status, 'the event carries nothing');
  }

  private async final(
    em: EntityManager,
    jobs: JobStore,
    job: Job,
    ev: JobEvent,
    f: JobFinal,
    log: Logger,
    ack: (disposition: EventDisposition, status: JobStatusName | null, message?: string) => EventAck,
    progress: JobProgressCounters | undefined,
  ): Promise<EventAck> {
    await jobs.bumpSeq(job.id, ev.seq);
    if (f.status !== JobStatus.JOB_STATUS_SUCCEEDED) {
      const to: JobStatusName = f.status === JobStatus.JOB_STATUS_CANCELLED ? 'cancelled' : 'failed';
      // The agent's own code stays in the message; DATA_LOSS (a restore found a chunk that does not
      // match its digest) is the job's code as well, the same as when the hub refuses an upload.
      const errorCode = to === 'cancelled' ? 'CANCELLED' : f.errorCode === 'DATA_LOSS' ? 'DATA_LOSS' : 'AGENT_ERROR';
      const done = await jobs.transition(job.id, to, { errorCode, errorMessage: `${f.errorCode}: ${f.errorMessage}`, progress });
      const now = done ?? (await jobs.get(job.id));
      log.info({ status: now?.status, error_code: f.errorCode }, 'job ended on the agent');
      return ack(EventDisposition.EVENT_DISPOSITION_APPLIED, now?.status ?? null);
    }
    if (job.kind === 'restore') {
      const done = await jobs.transition(job.id, 'succeeded', { result: { disks: f.disks.map((d) => ({ name: d.diskName, sizeBytes: d.sizeBytes, sha256: d.sha256 })) }, progress });
      return ack(EventDisposition.EVENT_DISPOSITION_APPLIED, (done ?? (await jobs.get(job.id)))?.status ?? null);
    }
    const outcome = await commitBackup(em, this.repo, jobs, job, f.disks, log, progress);
    if (outcome.ok) {
      this.hooks.backupCommitted?.((Date.now() - (job.startedAt ?? job.createdAt).getTime()) / 1000);
      return ack(EventDisposition.EVENT_DISPOSITION_APPLIED, 'succeeded');
    }
    const failed = await jobs.transition(job.id, 'failed', { errorCode: outcome.code, errorMessage: outcome.message, progress });
    log.warn({ code: outcome.code, reason: outcome.message }, 'backup not committed');
    return ack(EventDisposition.EVENT_DISPOSITION_APPLIED, (failed ?? (await jobs.get(job.id)))?.status ?? null, outcome.message);
  }
}
