#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { describeSettings, ConfigError } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { VERSION } from '../shared/version.js';
import { createJoinToken } from './agents/join-tokens.js';
import { apiTokenView, createApiToken, listApiTokens, revokeApiToken } from './auth/api-tokens.js';
import { HUB_SETTINGS, loadHubConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { Agent } from './db/entities/agent.js';
import { API_ROLES, type ApiRole } from './db/entities/api-token.js';
import { migrate, openOrm, type Orm } from './db/orm.js';
import { Hub } from './hub.js';
import { loadOrCreateCa } from './pki/ca-store.js';

const program = new Command('backhaul-hub')
  .description('The Backhaul hub: agents connect to it, and it keeps the state in PostgreSQL.')
  .version(VERSION)
  .option('-c, --config <file>', 'JSON config file (env BACKHAUL_HUB_CONFIG); environment variables override it')
  .addHelpText('after', `\nExample:\n  DATABASE_URL=postgres://postgres@127.0.0.1/backhaul backhaul-hub serve\n\n${describeSettings(HUB_SETTINGS)}`);

program
  .command('serve', { isDefault: true })
  .description('Run the hub until SIGTERM or SIGINT, then drain the agents and exit.')
  .addHelpText('after', '\nExample:\n  backhaul-hub serve --config /etc/backhaul/hub.json')
  .action(async () => {
    const cfg = loadHubConfig(program.opts().config);
    const log = createLogger('hub', cfg.logLevel).child({ hub_id: cfg.hubId });
    const hub = await Hub.start(cfg, log);
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stop requested');
      const hard = setTimeout(() => {
        log.error('graceful stop overran; exiting');
        process.exit(1);
      }, cfg.shutdownTimeoutMs + 1500);
      hard.unref();
      hub.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'stop failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });

const token = program.command('token').description('Manage join tokens for enrolling agents.');
token
  .command('create')
  .description('Create a single-use join token and print the command that enrolls an agent with it.')
  .option('--ttl <duration>', 'lifetime, such as 30m, 2h or 1d', parseDuration, 3_600_000)
  .option('--description <text>', 'note stored with the token')
  .option('--hub-address <host:port>', 'address agents should dial, shown in the printed command')
  .option('--json', 'print {token, expires_at, ca_sha256} as JSON')
  .addHelpText('after', '\nExample:\n  backhaul-hub token create --ttl 2h --hub-address hub.example.net:7443')
  .action(async (opts: { ttl: number; description?: string; hubAddress?: string; json?: boolean }) => {
    await withOrm(async (orm, cfg) => {
      const ca = await loadOrCreateCa(orm.em.fork());
      const created = await createJoinToken(orm.em.fork(), opts.ttl, opts.description);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ token: created.token, expires_at: created.expiresAt.toISOString(), ca_sha256: ca.fingerprint })}\n`);
        return;
      }
      const addr = opts.hubAddress ?? cfg.listen.replace('0.0.0.0', '<hub-host>');
      process.stdout.write(
        `Join token (single use, expires ${created.expiresAt.toISOString()}):\n  ${created.token}\n\n` +
          `Enroll an agent with:\n  backhaul-agent enroll --hub ${addr} --token ${created.token} --ca-sha256 ${ca.fingerprint}\n`,
      );
    });
  });

program
  .command('ca')
  .description("Print the hub's CA certificate (PEM): backhaulctl --ca and other TLS clients trust the hub through it.")
  .option('--sha256', 'print only its SHA-256 fingerprint, for backhaulctl login --ca-sha256 and agent enrollment')
  .addHelpText('after', '\nExample:\n  backhaul-hub ca > hub-ca.pem && backhaulctl login --hub hub.example.net:7443 --token bh_… --ca hub-ca.pem')
  .action(async (opts: { sha256?: boolean }) => {
    await withOrm(async (orm) => {
      const ca = await loadOrCreateCa(orm.em.fork());
      process.stdout.write(opts.sha256 ? `${ca.fingerprint}\n` : ca.certPem.endsWith('\n') ? ca.certPem : `${ca.certPem}\n`);
    });
  });

const apiToken = program.command('api-token').description('Manage bearer tokens of the REST API.');
apiToken
  .command('create')
  .description('Create an API token and print its secret; the hub keeps only its hash, so this is the only time it is shown.')
  .requiredOption('--name <name>', 'who or what uses the token, shown in the audit log')
  .requiredOption('--role <role>', `${API_ROLES.join(' | ')}: viewer reads, operator also writes, admin also deletes backups`, parseRole)
  .option('--json', 'print {id, name, role, token} as JSON')
  .addHelpText('after', '\nExample:\n  backhaul-hub api-token create --name grafana --role viewer')
  .action(async (opts: { name: string; role: ApiRole; json?: boolean }) => {
    await withOrm(async (orm) => {
      const t = await createApiToken(orm.em.fork(), opts.name, opts.role);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ id: t.id, name: t.name, role: t.role, token: t.token, created_at: t.createdAt.toISOString() })}\n`);
        return;
      }
      process.stdout.write(`API token ${t.id} (${t.role}) for ${t.name}; it is shown only now:\n  ${t.token}\n\nUse it as:\n  curl -H "Authorization: Bearer ${t.token}" http://<hub-host>:8080/api/v1/flows\n`);
    });
  });
apiToken
  .command('list')
  .description('List API tokens (never their secrets).')
  .option('--json', 'print a JSON array')
  .action(async (opts: { json?: boolean }) => {
    await withOrm(async (orm) => {
      const rows = (await listApiTokens(orm.em.fork())).map(apiTokenView);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows)}\n`);
        return;
      }
      process.stdout.write(formatTable(['ID', 'NAME', 'ROLE', 'CREATED', 'LAST USED', 'REVOKED'], rows.map((r) => [r.id, r.name, r.role, r.created_at, r.last_used_at ?? '-', r.revoked_at ?? '-'])));
    });
  });
apiToken
  .command('revoke')
  .description('Revoke an API token: requests with it are refused (401) from now on.')
  .argument('<id>', 'token id, from api-token list')
  .action(async (id: string) => {
    await withOrm(async (orm) => {
      const t = await revokeApiToken(orm.em.fork(), id);
      process.stdout.write(`revoked API token ${t.id} (${t.name}) at ${t.revokedAt!.toISOString()}\n`);
    });
  });

program
  .command('agents')
  .description('List enrolled agents with their presence, straight from the database.')
  .option('--json', 'print a JSON array')
  .addHelpText('after', '\nExample:\n  backhaul-hub agents --json')
  .action(async (opts: { json?: boolean }) => {
    await withOrm(async (orm) => {
      const agents = await orm.em.fork().find(Agent, {}, { orderBy: { enrolledAt: 'asc' } });
      const rows = agents.map((a) => ({
        id: a.id,
        name: a.name,
        hostname: a.hostname,
        version: a.version,
        status: a.disabled ? 'disabled' : a.online ? 'online' : 'offline',
        last_seen_at: a.lastSeenAt?.toISOString() ?? null,
        connected_hub: a.connectedHub,
      }));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(rows)}\n`);
        return;
      }
      process.stdout.write(formatTable(['ID', 'NAME', 'STATUS', 'VERSION', 'LAST SEEN', 'HUB'], rows.map((r) => [r.id, r.name, r.status, r.version ?? '-', r.last_seen_at ?? '-', r.connected_hub ?? '-'])));
    });
  });

program
  .command('settings')
  .description('Print every setting with its environment variable and default.')
  .action(() => {
    process.stdout.write(describeSettings(HUB_SETTINGS));
  });

/** Opens the hub's database (reusing a running embedded cluster), migrated, for one CLI command. */
async function withOrm(fn: (orm: Orm, cfg: ReturnType<typeof loadHubConfig>) => Promise<void>): Promise<void> {
  const cfg = loadHubConfig(program.opts().config);
  const log = createLogger('hub-cli', cfg.logLevel === 'info' ? 'warn' : cfg.logLevel);
  const db = await openDatabase(cfg, log);
  try {
    const orm = await openOrm(db.url, log, 2);
    try {
      await migrate(orm, db.url, log);
      await fn(orm, cfg);
    } finally {
      await orm.close();
    }
  } finally {
    await db.stop();
  }
}

function formatTable(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}

function parseRole(v: string): ApiRole {
  if (!(API_ROLES as readonly string[]).includes(v)) throw new InvalidArgumentError(`use one of ${API_ROLES.join(', ')}`);
  return v as ApiRole;
}

function parseDuration(v: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError('use a number and a unit: 90s, 30m, 2h, 7d');
  return Number(m[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

program.parseAsync().catch((err: unknown) => {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`backhaul-hub: ${msg}\n`);
  // 2: bad configuration (systemd does not restart on it); 1: anything else.
  process.exit(err instanceof ConfigError ? 2 : 1);
});
