import type { JobRunnerPort } from '../../../agent/connection.js';
import type { DataClient } from '../../../agent/data-client.js';
import { CHUNK_SIZE } from '../../../hub/repository/index.js';
import {
  EventDisposition,
  JobPhase,
  JobStatus,
  type Command,
  type CommandAck,
  type EventAck,
  type HeldJob,
  type JobEvent,
} from '../../../shared/gen/backhaul/v1/agent.js';

/** Every simulated target has one disk of one chunk, which is all zeros: committable, and never stored. */
export const SIM_DISK = { name: 'sda', sizeBytes: CHUNK_SIZE };
const ZERO_INDEX = Buffer.alloc(32);

/** When a simulated job's final report went out and when the hub acknowledged it (performance.now()). */
export interface FinalTiming {
  jobId: string;
  sentAt: number;
  ackedAt: number | null;
  /** The job status the hub's ack names: SUCCEEDED only once the backup is committed. */
  ackStatus: JobStatus | null;
}

export interface SimulatedJobsOptions {
  data: DataClient;
  send: (ev: JobEvent) => boolean;
  maxConcurrentJobs: number;
  /** How long each job reports progress before its final report. */
  durationMs: number;
  progressIntervalMs: number;
  /** Called when the hub has acknowledged a final report. */
  onFinalAcked: (t: FinalTiming) => void;
  onError: (err: unknown) => void;
}

interface SimJob {
  id: string;
  status: JobStatus;
  timer: NodeJS.Timeout | null;
  lastSeq: number;
}

/**
 * A job runner for simulated agents (the port agent/connection.ts drives): it accepts backups,
 * reports rising bytes every progressIntervalMs for durationMs, then puts a real index (one
 * all-zero chunk) through the DataService and sends a succeeded final report, which the hub
 * can commit. Like the real runner, a final report is kept until the hub acknowledges it and is
 * replayed after a reconnect (in memory: these agents never restart).
 */
export class SimulatedJobs implements JobRunnerPort {
  private readonly jobs = new Map<string, SimJob>();
  private readonly finals = new Map<number, { ev: JobEvent; timing: FinalTiming }>();
  private seq = 0;

  constructor(private readonly o: SimulatedJobsOptions) {}

  async held(): Promise<HeldJob[]> {
    return [...this.jobs.values()].map((j) => ({ jobId: j.id, status: j.status, phase: JobPhase.JOB_PHASE_TRANSFERRING, lastSeq: j.lastSeq }));
  }

  async replay(): Promise<void> {
    for (const { ev } of this.finals.values()) this.o.send(ev);
  }

  accept(cmd: Command): CommandAck {
    const ack = (accepted: boolean, errorCode = '', message = ''): CommandAck => ({ commandId: cmd.commandId, accepted, errorCode, message });
    const k = cmd.kind;
    if (k?.$case === 'abortJob') {
      const j = this.jobs.get(k.value.jobId);
      if (!j) return ack(true, 'JOB_NOT_HELD', 'not running here');
      this.end(j);
      return ack(true, '', 'aborted');
    }
    if (k?.$case !== 'startBackup') return ack(false, 'UNSUPPORTED_COMMAND', 'the simulated agent runs backups only');
    if (this.jobs.has(k.value.jobId)) return ack(true, '', 'already running');
    const working = [...this.jobs.values()].filter((j) => j.status === JobStatus.JOB_STATUS_RUNNING).length;
    if (working >= this.o.maxConcurrentJobs) return ack(false, 'AT_CAPACITY', `at most ${this.o.maxConcurrentJobs} jobs`);
    this.run(k.value.jobId);
    return ack(true);
  }

  async onEventAck(ack: EventAck): Promise<void> {
    const f = this.finals.get(ack.seq);
    if (!f) return;
    this.finals.delete(ack.seq);
    if (ack.disposition === EventDisposition.EVENT_DISPOSITION_REFUSED) this.o.onError(new Error(`final report of job ${f.timing.jobId} refused: ${ack.message}`));
    f.timing.ackedAt ??= performance.now();
    f.timing.ackStatus = ack.jobStatus;
    this.jobs.delete(f.timing.jobId);
    this.o.onFinalAcked(f.timing);
  }

  /** Stops every job's timer (the bench is over). */
  stop(): void {
    for (const j of this.jobs.values()) this.end(j);
  }

  private end(j: SimJob): void {
    if (j.timer) clearInterval(j.timer);
    j.timer = null;
    this.jobs.delete(j.id);
  }

  private event(j: SimJob, event: JobEvent['event']): JobEvent {
    j.lastSeq = ++this.seq;
    return { seq: j.lastSeq, jobId: j.id, at: new Date(), event };
  }

  private run(jobId: string): void {
    const j: SimJob = { id: jobId, status: JobStatus.JOB_STATUS_RUNNING, timer: null, lastSeq: 0 };
    this.jobs.set(jobId, j);
    const steps = Math.max(1, Math.round(this.o.durationMs / this.o.progressIntervalMs));
    let step = 0;
    const report = () => {
      step += 1;
      if (step > steps) {
        clearInterval(j.timer!);
        j.timer = null;
        this.finish(j).catch(this.o.onError);
        return;
      }
      const done = Math.floor((SIM_DISK.sizeBytes * step) / (steps + 1));
      this.o.send(
        this.event(j, {
          $case: 'progress',
          value: {
            phase: JobPhase.JOB_PHASE_TRANSFERRING,
            bytesTotal: SIM_DISK.sizeBytes,
            bytesDone: done,
            bytesRead: done,
            bytesTransferred: 0,
            bytesSent: 0,
            bytesReused: 0,
            bytesZero: 0,
            rateBytesPerSecond: SIM_DISK.sizeBytes / (this.o.durationMs / 1000),
            etaSeconds: steps - step,
            busy: undefined,
            note: '',
          },
        }),
      );
    };
    report();
    j.timer = setInterval(report, this.o.progressIntervalMs);
  }

  private async finish(j: SimJob): Promise<void> {
    const missing = await this.o.data.putIndex(j.id, SIM_DISK.name, SIM_DISK.sizeBytes, ZERO_INDEX);
    if (missing !== 0) throw new Error(`job ${j.id}: the hub misses ${missing} chunks of an all-zero index`);
    if (!this.jobs.has(j.id)) return; // aborted meanwhile
    j.status = JobStatus.JOB_STATUS_SUCCEEDED;
    const ev = this.event(j, {
      $case: 'final',
      value: { status: JobStatus.JOB_STATUS_SUCCEEDED, errorCode: '', errorMessage: '', disks: [{ diskName: SIM_DISK.name, sizeBytes: SIM_DISK.sizeBytes, nextBitmap: '', fullReadReason: '', sha256: '' }] },
    });
    const timing: FinalTiming = { jobId: j.id, sentAt: performance.now(), ackedAt: null, ackStatus: null };
    this.finals.set(ev.seq, { ev, timing });
    if (!this.o.send(ev)) this.o.onError(new Error(`job ${j.id}: no stream for the final report; it waits for the replay`));
  }
}
