import { Command, InvalidArgumentError } from 'commander';
import type { TargetView } from '../../lifecycle/read-model.js';
import { act, example } from '../command-kit.js';
import { bytes, fields, table } from '../format.js';

const collect = <T>(parse: (v: string) => T) => (v: string, all: T[] = []) => [...all, parse(v)];

/** --disk NAME=PATH:SIZE_BYTES */
function parseDisk(v: string): { name: string; path: string; size_bytes: number } {
  const m = /^([^=]+)=(.+):(\d+)$/.exec(v);
  if (!m) throw new InvalidArgumentError('use NAME=PATH:SIZE_BYTES, such as vda=/var/lib/vm/web.raw:10737418240');
  return { name: m[1]!, path: m[2]!, size_bytes: Number(m[3]) };
}

/** --option KEY=VALUE */
function parseOption(v: string): [string, string] {
  const i = v.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError('use KEY=VALUE');
  return [v.slice(0, i), v.slice(i + 1)];
}

const targetFields = (t: TargetView) =>
  fields([
    ['id', t.id],
    ['name', t.name],
    ['ref', t.ref],
    ['agent', t.agent_id],
    ['driver', t.driver],
    ['source', t.source],
    ...t.disks.map((d): [string, string] => [`disk ${d.name}`, `${d.path} (${bytes(d.size_bytes)})`]),
    ...Object.entries(t.options).map(([k, v]): [string, string] => [`option ${k}`, v]),
    ['updated', t.updated_at],
  ]);

export function targetsCommand(): Command {
  const cmd = example(new Command('targets').description('What agents can back up: the VMs and images they report, and targets added by hand.'), 'backhaulctl targets list');

  example(cmd.command('list').description('List targets.').option('--agent <id>', "only this agent's targets"), 'backhaulctl targets list --agent 3f0c…').action(
    act(async (ctx, opts: { agent?: string }) => {
      const res = await (await ctx.client()).call('listTargets', { agentId: opts.agent });
      const items = res.items as unknown as TargetView[];
      ctx.print({ items }, () =>
        table(['ID', 'NAME', 'DRIVER', 'DISKS', 'SIZE', 'AGENT', 'SOURCE'], items.map((t) => [t.id, t.name, t.driver, t.disks.length, bytes(t.disks.reduce((s, d) => s + d.size_bytes, 0)), t.agent_id, t.source])),
      );
    }),
  );

  example(cmd.command('show').description('Show one target.').argument('<id>', 'target id'), 'backhaulctl targets show 9a1e…').action(
    act(async (ctx, id: string) => {
      const { target } = await (await ctx.client()).call('getTarget', { id });
      ctx.print(target, () => targetFields(target as unknown as TargetView));
    }),
  );

  example(
    cmd
      .command('add')
      .description('Add a target its agent does not report itself.')
      .requiredOption('--agent <id>', 'agent that reads it')
      .requiredOption('--ref <ref>', "the agent's own id for it")
      .requiredOption('--name <name>', 'name shown to people')
      .requiredOption('--driver <driver>', 'qemu or file')
      .requiredOption('--disk <NAME=PATH:SIZE>', 'a disk; repeat for each', collect(parseDisk))
      .option('--option <KEY=VALUE>', 'driver option; repeatable', collect(parseOption)),
    'backhaulctl targets add --agent 3f0c… --ref web --name web --driver file --disk sda=/vm/web.raw:10737418240',
  ).action(
    act(async (ctx, opts: { agent: string; ref: string; name: string; driver: string; disk: object[]; option?: [string, string][] }) => {
      const body = { agent_id: opts.agent, ref: opts.ref, name: opts.name, driver: opts.driver, disks: opts.disk, options: Object.fromEntries(opts.option ?? []) };
      const { target } = await (await ctx.client()).call('createTarget', { body });
      const t = target as unknown as TargetView;
      ctx.print(t, () => `added target ${t.name} (${t.id})\n`);
    }),
  );
  return cmd;
}
