import { Command, InvalidArgumentError } from 'commander';
import type { AgentView } from '../../lifecycle/read-model.js';
import { act, example } from '../command-kit.js';
import { fields, table } from '../format.js';

const agentFields = (a: AgentView) =>
  fields([
    ['id', a.id],
    ['name', a.name],
    ['hostname', a.hostname],
    ['status', a.status],
    ['version', a.version],
    ['drivers', a.capabilities.drivers.join(', ')],
    ['max jobs', a.capabilities.max_concurrent_jobs],
    ['running jobs', a.running_jobs],
    ['last seen', a.last_seen_at],
    ['enrolled', a.enrolled_at],
  ]);

function parseTtl(v: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('use a number and a unit: 90s, 30m, 2h, 7d');
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

export function agentsCommand(): Command {
  const cmd = example(new Command('agents').description('Enrolled agents: list, show, disable, enable, and join tokens to enroll more.'), 'backhaulctl agents list');

  example(cmd.command('list').description('List agents with their status and running jobs.'), 'backhaulctl agents list --json').action(
    act(async (ctx) => {
      const res = await (await ctx.client()).call('listAgents', {});
      const items = res.items as unknown as AgentView[];
      ctx.print({ items }, () => table(['ID', 'NAME', 'STATUS', 'VERSION', 'RUNNING', 'LAST SEEN'], items.map((a) => [a.id, a.name, a.status, a.version, a.running_jobs, a.last_seen_at])));
    }),
  );

  example(cmd.command('show').description('Show one agent.').argument('<id>', 'agent id'), 'backhaulctl agents show 3f0c…').action(
    act(async (ctx, id: string) => {
      const { agent } = await (await ctx.client()).call('getAgent', { id });
      ctx.print(agent, () => agentFields(agent as unknown as AgentView));
    }),
  );

  for (const enabled of [false, true]) {
    const verb = enabled ? 'enable' : 'disable';
    example(
      cmd
        .command(verb)
        .description(enabled ? 'Enable an agent: it may connect and take jobs again.' : 'Disable an agent: its stream is closed, it cannot reconnect, and it gets no jobs.')
        .argument('<id>', 'agent id'),
      `backhaulctl agents ${verb} 3f0c…`,
    ).action(
      act(async (ctx, id: string) => {
        const { agent } = await (await ctx.client()).call(enabled ? 'enableAgent' : 'disableAgent', { id });
        const a = agent as unknown as AgentView;
        ctx.print(a, () => `agent ${a.name} (${a.id}) is ${a.status}\n`);
      }),
    );
  }

  example(
    cmd
      .command('join-token')
      .description('Create a single-use join token and print the command that enrolls an agent with it.')
      .option('--ttl <duration>', 'lifetime, such as 30m, 2h or 1d', parseTtl, 3600)
      .option('--description <text>', 'note stored with the token'),
    'backhaulctl agents join-token --ttl 2h --description "rack 4"',
  ).action(
    act(async (ctx, opts: { ttl: number; description?: string }) => {
      const client = await ctx.client();
      const { joinToken } = await client.call('createJoinToken', { ttlSeconds: opts.ttl, description: opts.description ?? '' });
      const t = joinToken as { token: string; expires_at: string; ca_sha256: string };
      ctx.print(t, () => `Join token (single use, expires ${t.expires_at}):\n  ${t.token}\n\nEnroll an agent with:\n  backhaul-agent enroll --hub ${client.conn.hub} --token ${t.token} --ca-sha256 ${t.ca_sha256}\n`);
    }),
  );
  return cmd;
}
