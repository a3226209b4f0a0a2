/** The terminal renderer: one bar per job, redrawn in place over the previous drawing. */
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ExecutionDetailView, JobView } from '../../hub/lifecycle/read-model.js';
import { TtyProgress } from '../../hub/cli/progress.js';

const job = (over: Partial<JobView>): JobView => ({
  id: '11111111-2222-4333-8444-555555555555', kind: 'backup', execution_id: null, agent_id: null, target_id: null, target_ref: 'web-vm', status: 'running', phase: 'transferring',
  percent: 0, bytes_total: 100 * 2 ** 20, bytes_done: 0, bytes_transferred: 0, bytes_reused: 0, bytes_read: 0, bytes_zero: 0, rate_bytes_per_second: 2 ** 20, eta_seconds: 90,
  busy: null, bottleneck: null, stalled: false, stall_reason: null,
  error_code: null, error_message: null, created_at: '2026-01-01T00:00:00.000Z', started_at: null, completed_at: null, backup_id: null, result: null, ...over,
});

const execution = (jobs: JobView[], status: ExecutionDetailView['status'] = 'running'): ExecutionDetailView => ({
  id: 'aaaaaaaa-2222-4333-8444-555555555555', flow_id: null, flow_name: 'nightly', trigger: 'api', scheduled_for: null, catch_up: false, status, started_at: '2026-01-01T00:00:00.000Z', completed_at: status === 'running' ? null : '2026-01-01T00:01:30.000Z',
  job_counts: { total: jobs.length, queued: 0, running: 1, succeeded: 0, failed: 0, cancelled: 0 }, bytes_total: 100 * 2 ** 20, bytes_done: jobs[0]!.bytes_done, percent: jobs[0]!.percent, jobs, retention_jobs: [],
});

describe('TtyProgress', () => {
  it('draws target, phase, bar, percent, bytes, rate, ETA and the busiest stage, then moves up over its lines to redraw them', () => {
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const view = new TtyProgress(out);
    const busy = { source_read: 0.4, hash_compress: 0.1, network: 0.9, hub_write: 0.3 };
    view.update(execution([job({ percent: 25, bytes_done: 25 * 2 ** 20, busy, bottleneck: 'network' })]));
    expect(text).not.toContain('\x1b[2F');
    expect(text).toContain(`web-vm  transferring  ${'█'.repeat(6)}${'░'.repeat(18)}  25%  25 MiB/100 MiB  1.0 MiB/s  ETA 1m30s  busiest: network\n`);
    text = '';
    view.update(execution([job({ percent: 50, bytes_done: 50 * 2 ** 20 })]));
    // Two lines drawn before (header and one job): back up two, clear each, rewrite.
    expect(text.startsWith('\x1b[2F\x1b[2Kexecution aaaaaaaa-2222-4333-8444-555555555555 (flow nightly): running 50%')).toBe(true);
    expect(text).toContain(`${'█'.repeat(12)}${'░'.repeat(12)}  50%`);
  });
});
