import { Command } from 'commander';
import type { ExecutionDetailView, FlowView } from '../../lifecycle/read-model.js';
import { act, count, example, flowId, type Ctx } from '../command-kit.js';
import { bytes, fields, table } from '../format.js';
import { followExecution } from '../follow.js';

const collect = (v: string, all: string[] = []) => [...all, v];

interface FlowFlags {
  name?: string;
  description?: string;
  target?: string[];
  cron?: string;
  timezone?: string;
  keepLast?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  clearSchedule?: boolean;
  clearRetention?: boolean;
}

const flowOptions = (c: Command): Command =>
  c
    .option('--description <text>', 'what the flow is for')
    .option('--target <id>', 'a target to back up; repeat for each (on update: replaces the list)', collect)
    .option('--cron <expr>', 'five-field schedule, such as "0 2 * * *"')
    .option('--timezone <tz>', 'IANA time zone of the schedule (default UTC)')
    .option('--keep-last <n>', 'retention: keep the last N backups', count)
    .option('--keep-daily <n>', 'retention: keep one a day for N days', count)
    .option('--keep-weekly <n>', 'retention: keep one a week for N weeks', count)
    .option('--keep-monthly <n>', 'retention: keep one a month for N months', count);

/** The REST body fields the flags name, and only those. */
function flowBody(o: FlowFlags): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.name !== undefined) body.name = o.name;
  if (o.description !== undefined) body.description = o.description;
  if (o.target !== undefined) body.target_ids = o.target;
  if (o.cron !== undefined) body.schedule = { cron: o.cron, ...(o.timezone ? { timezone: o.timezone } : {}) };
  if (o.clearSchedule) body.schedule = null;
  const keep = { keep_last: o.keepLast, keep_daily: o.keepDaily, keep_weekly: o.keepWeekly, keep_monthly: o.keepMonthly };
  if (Object.values(keep).some((v) => v !== undefined)) body.retention = JSON.parse(JSON.stringify(keep)) as object;
  if (o.clearRetention) body.retention = null;
  return body;
}

const flowFields = (f: FlowView) =>
  fields([
    ['id', f.id],
    ['name', f.name],
    ['description', f.description],
    ['enabled', f.enabled],
    ['targets', f.target_ids.join(', ')],
    ['schedule', f.schedule ? `${f.schedule.cron} (${f.schedule.timezone})` : null],
    ['retention', f.retention ? Object.entries(f.retention).filter(([, v]) => v !== null).map(([k, v]) => `${k}=${v}`).join(' ') : null],
    ['last execution', f.statistics.last_execution_id ? `${f.statistics.last_execution_status} ${f.statistics.last_execution_at} (${f.statistics.last_execution_id})` : null],
    ['executions', `${f.statistics.executions_total}: ${f.statistics.succeeded} succeeded, ${f.statistics.partial} partial, ${f.statistics.failed} failed, ${f.statistics.cancelled} cancelled`],
    ['backed up', bytes(f.statistics.bytes_total)],
  ]);

async function show(ctx: Ctx, flow: object, said: (f: FlowView) => string) {
  ctx.print(flow, () => said(flow as FlowView));
}

export function flowsCommand(): Command {
  const cmd = example(new Command('flows').description('Protection flows: which targets to back up, when, and how long to keep the backups.'), 'backhaulctl flows run nightly --wait');

  example(cmd.command('list').description('List flows with their last execution.'), 'backhaulctl flows list').action(
    act(async (ctx) => {
      const res = await (await ctx.client()).call('listFlows', {});
      const items = res.items as unknown as FlowView[];
      ctx.print({ items }, () =>
        table(
          ['ID', 'NAME', 'ENABLED', 'TARGETS', 'SCHEDULE', 'LAST', 'LAST AT'],
          items.map((f) => [f.id, f.name, f.enabled, f.target_ids.length, f.schedule?.cron, f.statistics.last_execution_status, f.statistics.last_execution_at]),
        ),
      );
    }),
  );

  example(cmd.command('show').description('Show one flow and its statistics.').argument('<flow>', 'flow id or name'), 'backhaulctl flows show nightly').action(
    act(async (ctx, ref: string) => {
      const { flow } = await (await ctx.client()).call('getFlow', { id: await flowId(ctx, ref) });
      await show(ctx, flow!, flowFields);
    }),
  );

  example(flowOptions(cmd.command('create').description('Create a flow.').argument('<name>', 'unique name')).option('--disabled', 'create it disabled'), 'backhaulctl flows create nightly --target 9a1e… --cron "0 2 * * *" --keep-daily 7').action(
    act(async (ctx, name: string, o: FlowFlags & { disabled?: boolean }) => {
      const { flow } = await (await ctx.client()).call('createFlow', { body: { ...flowBody(o), name, ...(o.disabled ? { enabled: false } : {}) } });
      await show(ctx, flow!, (f) => `created flow ${f.name} (${f.id})\n`);
    }),
  );

  example(
    flowOptions(cmd.command('update').description('Change some fields of a flow; the others stay.').argument('<flow>', 'flow id or name'))
      .option('--name <name>', 'new name')
      .option('--clear-schedule', 'run only when asked')
      .option('--clear-retention', 'keep every backup'),
    'backhaulctl flows update nightly --cron "30 1 * * *" --timezone Europe/Paris',
  ).action(
    act(async (ctx, ref: string, o: FlowFlags) => {
      const { flow } = await (await ctx.client()).call('updateFlow', { id: await flowId(ctx, ref), body: flowBody(o) });
      await show(ctx, flow!, (f) => `updated flow ${f.name} (${f.id})\n`);
    }),
  );

  example(cmd.command('delete').description('Delete a flow; refused while it runs. Its past executions stay.').argument('<flow>', 'flow id or name'), 'backhaulctl flows delete old-nightly').action(
    act(async (ctx, ref: string) => {
      const id = await flowId(ctx, ref);
      await (await ctx.client()).call('deleteFlow', { id });
      if (!ctx.json) process.stdout.write(`deleted flow ${ref}\n`);
    }),
  );

  for (const enabled of [true, false]) {
    const verb = enabled ? 'enable' : 'disable';
    example(
      cmd.command(verb).description(enabled ? 'Enable a flow: its schedule runs it again.' : 'Disable a flow: its schedule stops, and run is refused.').argument('<flow>', 'flow id or name'),
      `backhaulctl flows ${verb} nightly`,
    ).action(
      act(async (ctx, ref: string) => {
        const { flow } = await (await ctx.client()).call(enabled ? 'enableFlow' : 'disableFlow', { id: await flowId(ctx, ref) });
        await show(ctx, flow!, (f) => `flow ${f.name} is ${f.enabled ? 'enabled' : 'disabled'}\n`);
      }),
    );
  }

  example(
    cmd
      .command('run')
      .description('Run a flow now. With --wait, follow it to the end: exit 0 if it succeeded, 2 if partial, 1 if it failed or was cancelled.')
      .argument('<flow>', 'flow id or name')
      .option('--wait', 'follow the execution with live progress until it ends'),
    'backhaulctl flows run nightly --wait',
    'backhaulctl flows run nightly --json | jq -r .id',
  ).action(
    act(async (ctx, ref: string, o: { wait?: boolean }) => {
      const client = await ctx.client();
      const { execution } = await client.call('runFlow', { id: await flowId(ctx, ref) });
      const e = execution as unknown as ExecutionDetailView;
      if (!o.wait) {
        ctx.print(e, () => `started execution ${e.id} of flow ${e.flow_name} with ${e.job_counts.total} job(s)\nFollow it with: backhaulctl executions watch ${e.id}\n`);
        return;
      }
      // --json with --wait prints the final view only: one document a script can parse.
      const { view, exitCode } = await followExecution(client, e.id, { quiet: ctx.json });
      if (ctx.json) ctx.print(view, () => '');
      return exitCode;
    }),
  );
  return cmd;
}
