import type { ExecutionDetailView, JobView } from '../lifecycle/read-model.js';
import { bytes, duration, rate, stageLabel } from './format.js';

/*
 * How a followed execution is shown. On a terminal: one bar per job, redrawn in place. Elsewhere
 * (logs, pipes, CI): one plain line per change, so the output is a readable history.
 */

export interface ProgressView {
  update(e: ExecutionDetailView): void;
  /** The execution has ended: leave its final state and a summary. */
  finish(e: ExecutionDetailView): void;
}

const BAR_WIDTH = 24;
const shortId = (id: string) => id.slice(0, 8);
const label = (j: JobView) => j.target_ref ?? `${j.kind} ${shortId(j.id)}`;

function bar(percent: number): string {
  const filled = Math.round((BAR_WIDTH * percent) / 100);
  return `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
}

/** running → its phase; otherwise the status, with a stall shown. */
function state(j: JobView): string {
  const s = j.status === 'running' && j.phase ? j.phase : j.status;
  return j.stalled ? `${s} (stalled)` : s;
}

function jobDetail(j: JobView): string {
  const parts = [`${j.percent}%`, `${bytes(j.bytes_done)}/${bytes(j.bytes_total)}`];
  if (j.rate_bytes_per_second !== null) parts.push(rate(j.rate_bytes_per_second));
  if (j.eta_seconds !== null) parts.push(`ETA ${duration(j.eta_seconds)}`);
  if (j.status === 'running' && j.bottleneck) parts.push(`busiest: ${stageLabel(j.bottleneck)}`);
  if (j.error_code) parts.push(`${j.error_code}: ${j.error_message ?? ''}`.trim());
  return parts.join('  ');
}

function header(e: ExecutionDetailView): string {
  const c = e.job_counts;
  return `execution ${e.id} (flow ${e.flow_name}): ${e.status} ${e.percent}%  ${bytes(e.bytes_done)}/${bytes(e.bytes_total)}  jobs ${c.succeeded}/${c.total} done, ${c.running} running, ${c.queued} queued, ${c.failed} failed, ${c.cancelled} cancelled`;
}

/** The lines that close a follow: the outcome, and why each job that did not succeed ended. */
export function summary(e: ExecutionDetailView): string {
  const took = e.completed_at ? ` in ${duration((Date.parse(e.completed_at) - Date.parse(e.started_at)) / 1000)}` : '';
  const lines = [`execution ${e.id} ${e.status}${took}: ${e.job_counts.succeeded} succeeded, ${e.job_counts.failed} failed, ${e.job_counts.cancelled} cancelled; ${bytes(e.bytes_done)} done`];
  for (const j of e.jobs.filter((x) => x.status !== 'succeeded')) lines.push(`  ${label(j)}: ${j.status}${j.error_code ? ` ${j.error_code}: ${j.error_message ?? ''}` : ''}`);
  return `${lines.join('\n')}\n`;
}

/** Bars redrawn in place: the cursor goes back up over the previous drawing, each line is cleared and rewritten. */
export class TtyProgress implements ProgressView {
  private drawn = 0;

  constructor(private readonly out: NodeJS.WritableStream) {}

  update(e: ExecutionDetailView): void {
    const w = Math.max(6, ...e.jobs.map((j) => label(j).length));
    const sw = Math.max(...e.jobs.map((j) => state(j).length), 0);
    const lines = [header(e), ...e.jobs.map((j) => `  ${label(j).padEnd(w)}  ${state(j).padEnd(sw)}  ${bar(j.percent)}  ${jobDetail(j)}`)];
    const up = this.drawn > 0 ? `\x1b[${this.drawn}F` : '';
    this.out.write(up + lines.map((l) => `\x1b[2K${l}\n`).join(''));
    this.drawn = lines.length;
  }

  finish(e: ExecutionDetailView): void {
    this.update(e);
    this.out.write(summary(e));
  }
}

/** One line per change of a job's status, phase or percent, and of the execution's status. */
export class PlainProgress implements ProgressView {
  private readonly seen = new Map<string, string>();

  constructor(private readonly out: NodeJS.WritableStream) {}

  update(e: ExecutionDetailView): void {
    this.emit(e.id, e.status, () => header(e));
    for (const j of e.jobs) this.emit(j.id, `${state(j)}|${j.percent}`, () => `job ${shortId(j.id)} ${label(j)}: ${state(j)}  ${jobDetail(j)}`);
  }

  finish(e: ExecutionDetailView): void {
    this.update(e);
    this.out.write(summary(e));
  }

  private emit(key: string, value: string, line: () => string): void {
    if (this.seen.get(key) === value) return;
    this.seen.set(key, value);
    this.out.write(`${new Date().toISOString().slice(11, 19)} ${line()}\n`);
  }
}
