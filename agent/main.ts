#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError, describeSettings } from '../shared/config.js';
import { createLogger } from '../shared/logger.js';
import { VERSION } from '../shared/version.js';
import { AGENT_SETTINGS, loadAgentConfig } from './config.js';
import { HubConnection } from './connection.js';
import { DataClient } from './data-client.js';
import { createDrivers } from './drivers/index.js';
import { JobRunner } from './jobs/job-runner.js';
import { ChunkWorkerPool } from './pipeline/index.js';
import { enroll, EnrollError } from './enroll.js';
import { scanInventory } from './inventory.js';
import { loadCredentials, NotEnrolledError } from './state.js';


/** Exit codes, stable for scripts: 0 ok, 1 error, 2 bad arguments or config, 3 hub unreachable, 4 refused or CA mismatch. */
const EXIT = { ERROR: 1, USAGE: 2, UNREACHABLE: 3, REFUSED: 4 } as const;

/**
 * Hashing threads exit this long after their last task. Each keeps the shared read and frame
 * buffers of the backups it served alive until its own next collection, which an idle thread
 * hardly makes: with the default 10 s, the bench's restore (7 s after the incremental) began with
 * 200 MiB of agent RSS; with 1 s, 162 MiB. A backup starts the threads during its snapshot.
 */
const CHUNK_THREADS_IDLE_MS = 2_000;

const program = new Command('backhaul-agent')
  .description('The Backhaul agent: runs on a hypervisor host and takes commands from the hub.')
  .version(VERSION)
  .option('-c, --config <file>', 'JSON config file (env BACKHAUL_AGENT_CONFIG); environment variables override it')
  .addHelpText('after', `\n${describeSettings(AGENT_SETTINGS)}`);

program
  .command('enroll')
  .description("Join a hub: check its CA fingerprint, send a CSR, store the key and certificate (0600).")
  .requiredOption('--hub <host:port>', 'hub address')
  .requiredOption('--token <token>', 'single-use join token from `backhaul-hub token create`')
  .requiredOption('--ca-sha256 <hex>', "SHA-256 fingerprint of the hub's CA certificate")
  .option('--name <name>', 'display name for this agent (default: host name)')
  .addHelpText('after', '\nExample:\n  backhaul-agent enroll --hub hub.example.net:7443 --token bhjt_… --ca-sha256 3f2a…')
  .action(async (opts: { hub: string; token: string; caSha256: string; name?: string }) => {
    const cfg = loadAgentConfig(program.opts().config);
    const log = createLogger('agent', cfg.logLevel);
    const id = await enroll({ ...opts, stateDir: cfg.stateDir }, log);
    process.stdout.write(`Enrolled as agent ${id.agentId}; credentials are in ${cfg.stateDir}\n`);
  });

program
  .command('run', { isDefault: true })
  .description('Connect to the hub and serve it until SIGTERM; reconnects on its own.')
  .addHelpText('after', '\nExample:\n  backhaul-agent run --config /etc/backhaul/agent.json')
  .action(async () => {
    const cfg = loadAgentConfig(program.opts().config);
    const log = createLogger('agent', cfg.logLevel);
    const creds = await loadCredentials(cfg.stateDir);
    const hub = cfg.hub ?? creds.identity.hub;
    const drivers = createDrivers({ runtimeDir: process.env.RUNTIME_DIRECTORY });
    const data = new DataClient(hub, creds);
    let conn: HubConnection | null = null;
    // One pool of hashing and compression threads for every backup: the cores are shared anyway.
    const chunkPool = new ChunkWorkerPool({ idleTimeoutMs: CHUNK_THREADS_IDLE_MS });
    const jobs = new JobRunner({ stateDir: cfg.stateDir, drivers, data, maxConcurrentJobs: cfg.maxConcurrentJobs, readLimitBytesPerSecond: cfg.readLimitBytesPerSecond, chunkPool, targetOptions: (id) => cfg.targets.find((t) => t.id === id)?.options ?? {}, log, send: (ev) => conn?.sendEvent(ev) ?? false });
    await jobs.init();
    // Whatever jobs of a previous run left on the hypervisor (bitmaps, exports, overlays) goes now:
    // no job runs yet, and unsettled bitmaps are merged back so the next backup sees every change.
    for (const t of cfg.targets) {
      const driver = drivers.get(t.driver);
      if (!driver) continue;
      try {
        const removed = await driver.cleanupLeftovers({ id: t.id, driver: t.driver, disks: t.disks, options: t.options ?? {} }, new Set());
        if (removed.length > 0) log.info({ target: t.id, removed }, 'removed leftovers of earlier jobs');
      } catch (err) {
        log.warn({ err, target: t.id }, 'cannot clean up leftovers of earlier jobs; retrying at the next start');
      }
    }
    conn = new HubConnection(
      creds,
      {
        hub,
        maxConcurrentJobs: cfg.maxConcurrentJobs,
        drivers: [...drivers.keys()],
        reconnectBaseMs: cfg.reconnectBaseMs,
        reconnectCapMs: cfg.reconnectCapMs,
        inventory: () => scanInventory(cfg.targets, log),
        jobs,
      },
      log,
    );
    conn.start();
    const stop = (sig: string) => {
      log.info({ signal: sig }, 'stopping');
      jobs
        .stop()
        .then(() => conn!.stop())
        .then(() => data.close())
        .then(() => chunkPool.close())
        .then(
          () => process.exit(0),
          (err: unknown) => {
            log.error({ err }, 'stop failed');
            process.exit(1);
          },
        );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

program
  .command('settings')
  .description('Print every setting with its environment variable and default.')
  .action(() => {
    process.stdout.write(describeSettings(AGENT_SETTINGS));
  });

program.parseAsync().catch((err: unknown) => {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`backhaul-agent: ${msg}\n`);
  if (err instanceof ConfigError || err instanceof NotEnrolledError) process.exit(EXIT.USAGE);
  if (err instanceof EnrollError) {
    process.exit(err.code === 'BAD_ARGUMENT' ? EXIT.USAGE : err.code === 'HUB_UNREACHABLE' ? EXIT.UNREACHABLE : EXIT.REFUSED);
  }
  process.exit(EXIT.ERROR);
});
