import { Command } from 'commander';
import type { ExecutionDetailView, ExecutionView } from '../../lifecycle/read-model.js';
import { act, example, flowId, pageNote, paged } from '../command-kit.js';
import { bytes, table } from '../format.js';
import { followExecution } from '../follow.js';
import { summary } from '../progress.js';

const jobsTable = (e: ExecutionDetailView) =>
  table(
    ['JOB', 'TARGET', 'STATUS', 'PHASE', 'PERCENT', 'DONE', 'TOTAL', 'ERROR'],
    e.jobs.map((j) => [j.id, j.target_ref, j.status, j.phase, `${j.percent}%`, bytes(j.bytes_done), bytes(j.bytes_total), j.error_code]),
  );

export function executionsCommand(): Command {
  const cmd = example(new Command('executions').description('Runs of flows: list, show, cancel and watch them.'), 'backhaulctl executions watch 5b7d…');

  example(
    paged(
      cmd
        .command('list')
        .description('List executions, newest first.')
        .option('--flow <flow>', 'only this flow (id or name)')
        .option('--status <status>', 'running, succeeded, partial, failed or cancelled'),
    ),
    'backhaulctl executions list --flow nightly --status failed',
  ).action(
    act(async (ctx, o: { flow?: string; status?: string; limit?: number; offset?: number }) => {
      const flow = o.flow === undefined ? undefined : await flowId(ctx, o.flow);
      const res = await (await ctx.client()).call('listExecutions', { flowId: flow, status: o.status, limit: o.limit, offset: o.offset });
      const items = res.items as unknown as ExecutionView[];
      ctx.print({ items, total: res.total, limit: res.limit, offset: res.offset }, () =>
        table(
          ['ID', 'FLOW', 'STATUS', 'PERCENT', 'JOBS', 'FAILED', 'STARTED', 'COMPLETED'],
          items.map((e) => [e.id, e.flow_name, e.status, `${e.percent}%`, e.job_counts.total, e.job_counts.failed, e.started_at, e.completed_at]),
        ) + pageNote(items.length, res.total),
      );
    }),
  );

  example(cmd.command('show').description('Show an execution and its jobs.').argument('<id>', 'execution id'), 'backhaulctl executions show 5b7d…').action(
    act(async (ctx, id: string) => {
      const { execution } = await (await ctx.client()).call('getExecution', { id });
      const e = execution as unknown as ExecutionDetailView;
      ctx.print(e, () => (e.status === 'running' ? `execution ${e.id} (flow ${e.flow_name}): running ${e.percent}%\n` : summary(e)) + jobsTable(e));
    }),
  );

  example(cmd.command('cancel').description('Cancel a running execution: its live jobs are cancelled; it ends when they have stopped.').argument('<id>', 'execution id'), 'backhaulctl executions cancel 5b7d…').action(
    act(async (ctx, id: string) => {
      const { execution } = await (await ctx.client()).call('cancelExecution', { id });
      const e = execution as unknown as ExecutionDetailView;
      ctx.print(e, () => `cancel requested for execution ${e.id}; it is ${e.status}\n`);
    }),
  );

  example(
    cmd
      .command('watch')
      .description('Follow an execution to its end with live progress. Exit 0 if it succeeded, 2 if partial, 1 if it failed or was cancelled; Ctrl-C detaches.')
      .argument('<id>', 'execution id'),
    'backhaulctl executions watch 5b7d…',
    'backhaulctl executions watch 5b7d… --json   # one JSON line per change',
  ).action(
    act(async (ctx, id: string) => (await followExecution(await ctx.client(), id, { ndjson: ctx.json })).exitCode),
  );
  return cmd;
}
