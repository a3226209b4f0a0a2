import { Command } from 'commander';
import type { JobLogLineView, JobView } from '../../lifecycle/read-model.js';
import { act, count, example } from '../command-kit.js';
import { STAGE_NAMES } from '../../jobs/job-state.js';
import { bytes, duration, fields, rate, stageLabel } from '../format.js';

const jobFields = (j: JobView) =>
  fields([
    ['id', j.id],
    ['kind', j.kind],
    ['status', j.status],
    ['phase', j.phase],
    ['target', j.target_ref],
    ['agent', j.agent_id],
    ['execution', j.execution_id],
    ['progress', `${j.percent}%  ${bytes(j.bytes_done)}/${bytes(j.bytes_total)}`],
    ['transferred', bytes(j.bytes_transferred)],
    ['reused', bytes(j.bytes_reused)],
    ['read', bytes(j.bytes_read)],
    ['zero', bytes(j.bytes_zero)],
    ['rate', rate(j.rate_bytes_per_second)],
    ['eta', duration(j.eta_seconds)],
    ['busy', j.busy ? STAGE_NAMES.map((s) => `${stageLabel(s)} ${Math.round(j.busy![s] * 100)}%`).join(', ') : null],
    ['bottleneck', j.bottleneck ? stageLabel(j.bottleneck) : null],
    ['stalled', j.stalled ? (j.stall_reason ?? 'yes') : null],
    ['error', j.error_code ? `${j.error_code}: ${j.error_message ?? ''}` : null],
    ['backup', j.backup_id],
    ['created', j.created_at],
    ['started', j.started_at],
    ['completed', j.completed_at],
    ...(j.result ? [['result', JSON.stringify(j.result)] as [string, string]] : []),
  ]);

export function jobsCommand(): Command {
  const cmd = example(new Command('jobs').description('Jobs: one backup, restore, verify, prune or garbage collection each.'), 'backhaulctl jobs log 8c2f…');

  example(cmd.command('show').description('Show a job and its progress.').argument('<id>', 'job id'), 'backhaulctl jobs show 8c2f…').action(
    act(async (ctx, id: string) => {
      const { job } = await (await ctx.client()).call('getJob', { id });
      ctx.print(job, () => jobFields(job as unknown as JobView));
    }),
  );

  example(cmd.command('log').description("Print a job's task log, oldest line first.").argument('<id>', 'job id').option('--limit <n>', 'at most this many lines (default 1000)', count), 'backhaulctl jobs log 8c2f… --limit 50').action(
    act(async (ctx, id: string, o: { limit?: number }) => {
      const res = await (await ctx.client()).call('getJobLog', { id, limit: o.limit });
      const items = res.items as unknown as JobLogLineView[];
      ctx.print({ items }, () => items.map((l) => `${l.at} ${l.level.padEnd(5)} ${l.message}${l.fields ? ` ${JSON.stringify(l.fields)}` : ''}\n`).join(''));
    }),
  );

  example(cmd.command('cancel').description('Cancel a job; one already on its agent ends cancelled once the agent has stopped.').argument('<id>', 'job id'), 'backhaulctl jobs cancel 8c2f…').action(
    act(async (ctx, id: string) => {
      const { job } = await (await ctx.client()).call('cancelJob', { id });
      const j = job as unknown as JobView;
      ctx.print(j, () => `cancel requested for job ${j.id}; it is ${j.status}\n`);
    }),
  );
  return cmd;
}
