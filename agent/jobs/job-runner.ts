import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  EventDisposition,
  JobPhase,
  JobStatus,
  type Command,
  type CommandAck,
  type DiskResult,
  type EventAck,
  type HeldJob,
  JobEvent,
  type JobProgress,
} from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import type { DataClient } from '../data-client.js';
import type { Driver, Snapshot } from '../drivers/driver.js';
import type { ChunkWorkerPool, PipelineProgress } from '../pipeline/index.js';
import { runBackupJob } from './backup-job.js';
import { restoreDisk } from './restore-job.js';

interface RunningJob {
  id: string;
  kind: 'backup' | 'restore';
  abort: AbortController;
  phase: JobPhase;
  status: JobStatus;
  lastSeq: number;
  snapshot: Snapshot | null;
}

export interface JobRunnerDeps {
  stateDir: string;
  drivers: Map<string, Driver>;
  data: DataClient;
  maxConcurrentJobs: number;
  /** Cap on a backup's disk reads, bytes per second; 0 for none. */
  readLimitBytesPerSecond?: number;
  /** Hashing and compression threads shared by every backup (each makes its own without). */
  chunkPool?: ChunkWorkerPool;
  /** Driver options of a configured target (QMP socket paths and the like), by target id. */
  targetOptions: (targetId: string) => Record<string, string>;
  log: Logger;
  /** Writes an event to the control stream; false when no stream is up (progress is then dropped). */
  send: (ev: JobEvent) => boolean;
}

const PHASE: Record<'snapshotting' | 'transferring' | 'finalizing', JobPhase> = {
  snapshotting: JobPhase.JOB_PHASE_SNAPSHOTTING,
  transferring: JobPhase.JOB_PHASE_TRANSFERRING,
  finalizing: JobPhase.JOB_PHASE_FINALIZING,
};

/**
 * Runs the jobs the hub sends, reports their progress, and makes sure the hub hears every
 * final report: a final report is written to disk before it is sent and removed only when the
 * hub acknowledges it, so it is replayed after a reconnect or an agent restart.
 */
export class JobRunner {
  private readonly jobs = new Map<string, RunningJob>();
  private seq = 0;
  /** Final reports on disk that the hub has not acknowledged, by sequence number. */
  private readonly unacked = new Map<number, string>();
  private readonly reportsDir: string;

  constructor(private readonly deps: JobRunnerDeps) {
    this.reportsDir = join(deps.stateDir, 'reports');
  }

  /** Loads the event counter, so sequence numbers keep rising across restarts. */
  async init(): Promise<void> {
    await mkdir(this.reportsDir, { recursive: true, mode: 0o700 });
    const saved = await readFile(join(this.deps.stateDir, 'event-seq'), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '0'; // first start
      throw err;
    });
    this.seq = Number(saved) || 0;
    for (const report of await this.pendingReports()) {
      this.seq = Math.max(this.seq, report.seq);
      this.unacked.set(report.seq, report.jobId);
    }
  }

  /** Jobs this agent holds, for Hello: running ones and those whose final report awaits an ack. */
  async held(): Promise<HeldJob[]> {
    const out: HeldJob[] = [...this.jobs.values()].map((j) => ({ jobId: j.id, status: j.status, phase: j.phase, lastSeq: j.lastSeq }));
    for (const r of await this.pendingReports()) {
      if (!this.jobs.has(r.jobId) && r.event?.$case === 'final') out.push({ jobId: r.jobId, status: r.event.value.status, phase: JobPhase.JOB_PHASE_UNSPECIFIED, lastSeq: r.seq });
    }
    return out;
  }

  /** Re-sends every final report the hub has not acknowledged. Called after each HelloAck. */
  async replay(): Promise<void> {
    for (const r of await this.pendingReports()) this.deps.send(r);
  }

  accept(cmd: Command): CommandAck {
    const ack = (accepted: boolean, errorCode = '', message = ''): CommandAck => ({ commandId: cmd.commandId, accepted, errorCode, message });
    const k = cmd.kind;
    if (k?.$case === 'abortJob') {
      const j = this.jobs.get(k.value.jobId);
      // JOB_NOT_HELD tells the hub that nothing of the job remains here (leftovers are removed at start).
      if (!j) return ack(true, 'JOB_NOT_HELD', `job ${k.value.jobId} is not running here`);
      j.abort.abort(new Error(k.value.reason || 'aborted by the hub'));
      return ack(true, '', 'aborting');
    }
    if (k?.$case !== 'startBackup' && k?.$case !== 'startRestore') return ack(false, 'UNSUPPORTED_COMMAND', 'not a job command');
    const jobId = k.value.jobId;
    if (this.jobs.has(jobId)) return ack(true, '', 'already running'); // a repeated command
    // A job whose final report is written no longer works; it only waits for the hub's verdict.
    // The hub frees its slot on that report, so it must be free here too.
    const working = [...this.jobs.values()].filter((j) => j.status === JobStatus.JOB_STATUS_RUNNING).length;
    if (working >= this.deps.maxConcurrentJobs) return ack(false, 'AT_CAPACITY', `this agent runs at most ${this.deps.maxConcurrentJobs} jobs`);
    if (k.$case === 'startBackup' && !this.deps.drivers.has(k.value.target?.driver ?? '')) {
      return ack(false, 'UNKNOWN_DRIVER', `this agent has no driver "${k.value.target?.driver}"`);
    }
    const job: RunningJob = {
      id: jobId,
      kind: k.$case === 'startBackup' ? 'backup' : 'restore',
      abort: new AbortController(),
      phase: JobPhase.JOB_PHASE_UNSPECIFIED,
      status: JobStatus.JOB_STATUS_RUNNING,
      lastSeq: 0,
      snapshot: null,
    };
    this.jobs.set(jobId, job);
    const log = this.deps.log.child({ job_id: jobId });
    const work = k.$case === 'startBackup' ? this.backup(job, k.value, log) : this.restore(job, k.value, log);
    work.catch((err: unknown) => log.error({ err }, 'job runner failed'));
    return ack(true);
  }

  /** The hub answered a final report: settle the snapshot's bitmaps and forget the report. */
  async onEventAck(ack: EventAck): Promise<void> {
    // Most acks are for progress reports; only final reports have anything to settle.
    const jobId = this.unacked.get(ack.seq);
    if (jobId === undefined) return;
    const job = this.jobs.get(jobId);
    if (ack.disposition === EventDisposition.EVENT_DISPOSITION_REFUSED && !job) {
      this.deps.log.warn({ job_id: jobId, reason: ack.message }, 'the hub refused a final report; dropping it');
    }
    if (job?.snapshot) {
      const snap = job.snapshot;
      job.snapshot = null;
      if (ack.jobStatus === JobStatus.JOB_STATUS_SUCCEEDED) await snap.committed();
      else await snap.abandoned();
      await snap.release();
    }
    await rm(this.reportPath(jobId), { force: true });
    this.unacked.delete(ack.seq);
    this.jobs.delete(jobId);
  }

  private nextSeq(): number {
    this.seq += 1;
    void writeFile(join(this.deps.stateDir, 'event-seq'), String(this.seq)).catch((err: unknown) => this.deps.log.warn({ err }, 'cannot save the event counter'));
    return this.seq;
  }

  private progress(job: RunningJob, p: Partial<JobProgress>, note = ''): void {
    const seq = this.nextSeq();
    job.lastSeq = seq;
    const value: JobProgress = {
      phase: job.phase,
      bytesTotal: 0,
      bytesDone: 0,
      bytesRead: 0,
      bytesTransferred: 0,
      bytesSent: 0,
      bytesReused: 0,
      bytesZero: 0,
      rateBytesPerSecond: 0,
      etaSeconds: 0,
      busy: undefined,
      note,
      ...p,
    };
    this.deps.send({ seq, jobId: job.id, at: new Date(), event: { $case: 'progress', value } });
  }

  private async final(job: RunningJob, status: JobStatus, disks: DiskResult[], errorCode = '', errorMessage = ''): Promise<void> {
    const seq = this.nextSeq();
    job.lastSeq = seq;
    job.status = status;
    const ev: JobEvent = { seq, jobId: job.id, at: new Date(), event: { $case: 'final', value: { status, errorCode, errorMessage, disks } } };
    const tmp = `${this.reportPath(job.id)}.tmp`;
    await writeFile(tmp, JSON.stringify(JobEvent.toJSON(ev)), { mode: 0o600, flush: true });
    await rename(tmp, this.reportPath(job.id));
    this.unacked.set(seq, job.id);
    this.deps.send(ev);
  }

  private async backup(job: RunningJob, cmd: Extract<Command['kind'], { $case: 'startBackup' }>['value'], log: Logger): Promise<void> {
    let last: PipelineProgress | null = null;
    try {
      const options = { ...this.deps.targetOptions(cmd.target?.id ?? ''), ...cmd.targetOptions };
      const { snapshot, disks } = await runBackupJob(
        { ...cmd, targetOptions: options },
        this.deps.drivers,
        this.deps.data,
        {
          phase: (p) => {
            job.phase = PHASE[p];
            this.progress(job, last ? toProto(last) : {});
          },
          progress: (p) => {
            last = p;
            this.progress(job, toProto(p));
          },
          note: (level, message) => {
            log[level]({ note: message }, 'job note');
            this.progress(job, last ? toProto(last) : {}, message);
          },
        },
        job.abort.signal,
        { readLimitBytesPerSecond: this.deps.readLimitBytesPerSecond, pool: this.deps.chunkPool },
      );
      job.snapshot = snapshot;
      await this.final(job, JobStatus.JOB_STATUS_SUCCEEDED, disks);
    } catch (err) {
      const cancelled = job.abort.signal.aborted;
      log.warn({ err }, cancelled ? 'backup cancelled' : 'backup failed');
      await this.final(job, cancelled ? JobStatus.JOB_STATUS_CANCELLED : JobStatus.JOB_STATUS_FAILED, [], codeOf(err, cancelled), (err as Error).message);
    }
  }

  private async restore(job: RunningJob, cmd: Extract<Command['kind'], { $case: 'startRestore' }>['value'], log: Logger): Promise<void> {
    const counters = { bytesTotal: 0, bytesDone: 0, bytesTransferred: 0, bytesZero: 0 };
    job.phase = JobPhase.JOB_PHASE_TRANSFERRING;
    let lastSent = 0;
    const started = Date.now();
    try {
      const results: DiskResult[] = [];
      for (const disk of cmd.disks) {
        results.push(
          await restoreDisk(
            this.deps.data,
            job.id,
            cmd.backupId,
            disk,
            (d) => {
              for (const [k, v] of Object.entries(d)) counters[k as keyof typeof counters] += v;
              if (Date.now() - lastSent >= 1000) {
                lastSent = Date.now();
                const rate = counters.bytesDone / Math.max(0.001, (Date.now() - started) / 1000);
                this.progress(job, { ...counters, bytesRead: 0, rateBytesPerSecond: rate, etaSeconds: Math.round((counters.bytesTotal - counters.bytesDone) / Math.max(rate, 1)) });
              }
            },
            job.abort.signal,
          ),
        );
      }
      this.progress(job, { ...counters, bytesRead: 0, rateBytesPerSecond: counters.bytesDone / Math.max(0.001, (Date.now() - started) / 1000) });
      log.info({ disks: results.map((r) => ({ disk: r.diskName, sha256: r.sha256 })) }, 'restore written');
      await this.final(job, JobStatus.JOB_STATUS_SUCCEEDED, results);
    } catch (err) {
      const cancelled = job.abort.signal.aborted;
      log.warn({ err }, cancelled ? 'restore cancelled' : 'restore failed');
      await this.final(job, cancelled ? JobStatus.JOB_STATUS_CANCELLED : JobStatus.JOB_STATUS_FAILED, [], codeOf(err, cancelled), (err as Error).message);
    }
  }

  private reportPath(jobId: string): string {
    return join(this.reportsDir, `${jobId}.json`);
  }

  private async pendingReports(): Promise<JobEvent[]> {
    const names = await readdir(this.reportsDir);
    const out: JobEvent[] = [];
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      out.push(JobEvent.fromJSON(JSON.parse(await readFile(join(this.reportsDir, n), 'utf8'))));
    }
    return out;
  }

  /** Aborts every job (agent shutdown); their final reports stay on disk for the next start. */
  async stop(): Promise<void> {
    for (const j of this.jobs.values()) j.abort.abort(new Error('agent stopping'));
  }
}

function codeOf(err: unknown, cancelled: boolean): string {
  if (cancelled) return 'CANCELLED';
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' ? c : 'AGENT_ERROR';
}

function toProto(p: PipelineProgress): Partial<JobProgress> {
  return {
    bytesTotal: p.bytesTotal,
    bytesDone: p.bytesDone,
    bytesRead: p.bytesRead,
    bytesTransferred: p.bytesTransferred,
    bytesSent: p.bytesSent,
    bytesReused: p.bytesReused,
    bytesZero: p.bytesZero,
    rateBytesPerSecond: p.rateBytesPerSecond,
    etaSeconds: Math.round(p.etaSeconds ?? 0),
    busy: { sourceRead: p.busy.sourceRead, hashCompress: p.busy.hashCompress, network: p.busy.network, hubWrite: p.busy.hubWrite ?? 0 },
  };
}
