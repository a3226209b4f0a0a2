#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { VERSION } from '../../shared/version.js';
import { agentsCommand } from './commands/agents.js';
import { backupsCommand } from './commands/backups.js';
import { executionsCommand } from './commands/executions.js';
import { flowsCommand } from './commands/flows.js';
import { jobsCommand } from './commands/jobs.js';
import { loginCommand } from './commands/login.js';
import { targetsCommand } from './commands/targets.js';
import { tokensCommand } from './commands/tokens.js';
import { configPath } from './config-file.js';
import { CliError, cliErrorOf, EXIT } from './exit-codes.js';

/** The operator's CLI: every call goes to the hub's AdminService, with the token's role. */
const program = new Command('backhaulctl')
  .description('Operate a Backhaul hub from a terminal.')
  .version(VERSION)
  .option('--hub <host:port>', "the hub's gRPC address (env BACKHAUL_HUB)")
  .option('--token <token>', 'API token (env BACKHAUL_TOKEN)')
  .option('--ca <file>', "the hub's CA certificate, PEM, from backhaul-hub ca (env BACKHAUL_CA)")
  .option('--json', 'print the REST-shaped JSON instead of tables')
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Connection: flags, then environment, then ${configPath()} (written by backhaulctl login).

Exit codes: 0 ok or succeeded, 1 failed or cancelled (or the hub failed the call), 2 partial,
3 hub unreachable, 4 bad token, 5 forbidden, 6 not found, 7 bad usage, 8 conflict, 130 detached.

Example:
  backhaulctl login --hub hub.example.net:7443 --token bh_… --ca-sha256 4f1c…
  backhaulctl flows run nightly --wait`,
  );

for (const cmd of [loginCommand(), agentsCommand(), targetsCommand(), flowsCommand(), executionsCommand(), jobsCommand(), backupsCommand(), tokensCommand()]) {
  program.addCommand(cmd);
}

// Usage errors exit 7 (not commander's 1, which means "failed"); help and version exit 0.
program.exitOverride();
for (const c of program.commands) {
  c.exitOverride();
  for (const sub of c.commands) sub.exitOverride();
}

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
  const e = err instanceof CliError ? err : cliErrorOf(err, program.opts<{ hub?: string }>().hub ?? process.env.BACKHAUL_HUB ?? 'the configured address');
  process.stderr.write(`backhaulctl: ${e.message}\n`);
  process.exit(e.exitCode);
});
