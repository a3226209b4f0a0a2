import type { Job, JobProgressCounters } from '../db/entities/job.js';
import { mergeCounters } from './job-store.js';
import { phaseRank, type JobPhaseName } from './job-state.js';

export interface PendingProgress {
  seq: number;
  phase: JobPhaseName | null;
  counters: JobProgressCounters;
}

/**
 * Holds back progress reports, so a running job costs the database at most one write per
 * `intervalMs` however often its agent reports. What matters is never held: a job's first
 * report (it starts running), a new phase and a note are written at once, and a job's pending
 * report is written before its final report is handled. A held report is merged with later
 * ones by the same rules as the database (counters never go back), and written by a timer when
 * the interval is up. The hub holding the agent's stream is the only writer of its progress.
 */
export class ProgressCoalescer {
  private readonly lastWrite = new Map<string, number>();
  private readonly pending = new Map<string, { p: PendingProgress; timer: NodeJS.Timeout }>();

  constructor(
    private readonly intervalMs: number,
    /** Writes a held report; called by the timer and by flush(). */
    private readonly write: (jobId: string, p: PendingProgress) => Promise<void>,
    private readonly onError: (jobId: string, err: unknown) => void,
  ) {}

  /** The report to write now (merged with any held one), or null when it is held for later. */
  offer(job: Job, p: PendingProgress, hasNote: boolean): PendingProgress | null {
    const held = this.pending.get(job.id);
    const merged = held ? merge(held.p, p) : p;
    const due = Date.now() - (this.lastWrite.get(job.id) ?? 0) >= this.intervalMs;
    if (job.status === 'dispatched' || phaseRank(p.phase) > phaseRank(held?.p.phase ?? job.phase) || hasNote || due) {
      if (held) clearTimeout(held.timer);
      this.pending.delete(job.id);
      this.lastWrite.set(job.id, Date.now());
      return merged;
    }
    if (held) {
      held.p = merged;
      return null;
    }
    const wait = (this.lastWrite.get(job.id) ?? 0) + this.intervalMs - Date.now();
    const timer = setTimeout(() => void this.flush(job.id), Math.max(0, wait));
    timer.unref();
    this.pending.set(job.id, { p, timer });
    return null;
  }

  /** Writes the job's held report now, if there is one. */
  async flush(jobId: string): Promise<void> {
    const held = this.pending.get(jobId);
    if (!held) return;
    clearTimeout(held.timer);
    this.pending.delete(jobId);
    this.lastWrite.set(jobId, Date.now());
    await this.write(jobId, held.p).catch((err: unknown) => this.onError(jobId, err));
  }

  /** The job's held report, now no longer held: its final report writes it, in one statement with its end. */
  take(jobId: string): PendingProgress | null {
    const held = this.pending.get(jobId);
    this.forget(jobId);
    return held?.p ?? null;
  }

  /** The job ended: nothing more of it is written. */
  forget(jobId: string): void {
    const held = this.pending.get(jobId);
    if (held) clearTimeout(held.timer);
    this.pending.delete(jobId);
    this.lastWrite.delete(jobId);
  }
}

/** A later report on top of a held one: counters never go back, the phase only forward. */
function merge(held: PendingProgress, next: PendingProgress): PendingProgress {
  return {
    seq: Math.max(held.seq, next.seq),
    phase: phaseRank(next.phase) >= phaseRank(held.phase) ? next.phase : held.phase,
    counters: mergeCounters(held.counters, next.counters),
  };
}
