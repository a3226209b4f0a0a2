#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
import { describeSettings, ConfigError } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { VERSION } from '../shared/version.js';
import { createJoinToken } from './agents/join-tokens.js';
import { HUB_SETTINGS, loadHubConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { Agent } from './db/entities/agent.js';
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
