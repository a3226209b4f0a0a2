import { Command, InvalidArgumentError } from 'commander';
import type { ApiTokenView } from '../../auth/api-tokens.js';
import { act, example } from '../command-kit.js';
import { table } from '../format.js';

const ROLES = ['viewer', 'operator', 'admin'];

function parseRole(v: string): string {
  if (!ROLES.includes(v)) throw new InvalidArgumentError(`use one of ${ROLES.join(', ')}`);
  return v;
}

export function tokensCommand(): Command {
  const cmd = example(new Command('tokens').description('API tokens for REST and backhaulctl (admin only).'), 'backhaulctl tokens create --name grafana --role viewer');

  example(cmd.command('list').description('List API tokens; never their secrets.'), 'backhaulctl tokens list').action(
    act(async (ctx) => {
      const res = await (await ctx.client()).call('listApiTokens', {});
      const items = res.items as unknown as ApiTokenView[];
      ctx.print({ items }, () => table(['ID', 'NAME', 'ROLE', 'CREATED', 'LAST USED', 'REVOKED'], items.map((t) => [t.id, t.name, t.role, t.created_at, t.last_used_at, t.revoked_at])));
    }),
  );

  example(
    cmd
      .command('create')
      .description('Create an API token and print its secret; the hub keeps only its hash, so this is the only time it is shown.')
      .requiredOption('--name <name>', 'who or what uses it, shown in the audit log')
      .requiredOption('--role <role>', 'viewer reads; operator also writes; admin also deletes backups and manages tokens', parseRole),
    'backhaulctl tokens create --name ci --role operator --json | jq -r .token',
  ).action(
    act(async (ctx, o: { name: string; role: string }) => {
      const { apiToken } = await (await ctx.client()).call('createApiToken', { name: o.name, role: o.role });
      const t = apiToken as unknown as ApiTokenView & { token: string };
      ctx.print(t, () => `API token ${t.id} (${t.role}) for ${t.name}; it is shown only now:\n  ${t.token}\n`);
    }),
  );

  example(cmd.command('revoke').description('Revoke an API token: calls with it are refused from now on.').argument('<id>', 'token id, from tokens list'), 'backhaulctl tokens revoke 1c9d…').action(
    act(async (ctx, id: string) => {
      const { apiToken } = await (await ctx.client()).call('revokeApiToken', { id });
      const t = apiToken as unknown as ApiTokenView;
      ctx.print(t, () => `revoked API token ${t.id} (${t.name}) at ${t.revoked_at}\n`);
    }),
  );
  return cmd;
}
