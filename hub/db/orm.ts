import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import pg from 'pg';
import type { Logger } from '../../shared/logger.js';
import { entities } from './entities/index.js';
import { migrationsList } from './migrations/index.js';

export type Orm = MikroORM;

export async function openOrm(url: string, log: Logger, poolMax = 10): Promise<Orm> {
  return MikroORM.init({
    clientUrl: url,
    entities,
    extensions: [Migrator],
    discovery: { warnWhenNoEntities: true },
    pool: { min: 0, max: poolMax },
    migrations: { migrationsList, transactional: true, allOrNothing: true, snapshot: false, silent: true },
    logger: (msg) => log.debug({ orm: msg }, 'orm'),
    allowGlobalContext: false,
  });
}

/** Arbitrary constant: the advisory lock key that serialises migrations across hubs. */
const MIGRATION_LOCK_KEY = 0x6261636b; // "back"

/**
 * Applies pending migrations while holding a PostgreSQL advisory lock on a dedicated
 * connection, so hubs that start together migrate exactly once: the first runs them, the
 * others wait for the lock and then find nothing pending.
 */
export async function migrate(orm: Orm, url: string, log: Logger): Promise<string[]> {
  const lock = new pg.Client({ connectionString: url });
  await lock.connect();
  try {
    await lock.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    const applied = await orm.getMigrator().up();
    const names = applied.map((m) => m.name);
    if (names.length > 0) log.info({ migrations: names }, 'applied database migrations');
    return names;
  } finally {
    await lock
      .query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY])
      .catch((err: unknown) => log.warn({ err }, 'advisory unlock failed; closing the connection releases the lock'));
    await lock.end();
  }
}
