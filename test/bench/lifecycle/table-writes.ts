import { query } from '../../support/database.js';

/** Rows inserted, updated and deleted so far, per table of a database. */
export type TableWrites = Map<string, number>;

/**
 * PostgreSQL's own count of row writes (n_tup_ins + n_tup_upd + n_tup_del) per user table. Each
 * backend publishes its counts at most once a second while busy (pg_stat_force_next_flush() only
 * flushes the calling backend), so a reading lags the hub by up to a second.
 */
export async function tableWrites(databaseUrl: string): Promise<TableWrites> {
  const rows = await query<{ relname: string; n: string }>(
    databaseUrl,
    'select relname, n_tup_ins + n_tup_upd + n_tup_del as n from pg_stat_user_tables',
  );
  return new Map(rows.map((r) => [r.relname, Number(r.n)]));
}

/** A reading of tableWrites and when it was taken (performance.now(), ms). */
export interface WritesSample {
  at: number;
  writes: TableWrites;
}

/**
 * Row writes per second, per table (largest first, tables without writes left out): the
 * least-squares slope of each table's count over the readings. Each backend publishes its
 * counts in bursts, about once a second, so the difference of two readings is off by up to a
 * burst at either end; the slope over many readings is not.
 */
export function writeRates(samples: WritesSample[], exclude: string[] = []): [string, number][] {
  if (samples.length < 2) throw new Error('a write rate needs at least two readings');
  const tables = new Set(samples.flatMap((s) => [...s.writes.keys()]).filter((t) => !exclude.includes(t)));
  const ts = samples.map((s) => s.at / 1000);
  const tMean = ts.reduce((a, b) => a + b, 0) / ts.length;
  const tVar = ts.reduce((a, t) => a + (t - tMean) ** 2, 0);
  const out: [string, number][] = [];
  for (const table of tables) {
    const ys = samples.map((s) => s.writes.get(table) ?? 0);
    const yMean = ys.reduce((a, b) => a + b, 0) / ys.length;
    const slope = ts.reduce((a, t, i) => a + (t - tMean) * (ys[i]! - yMean), 0) / tVar;
    if (slope > 0) out.push([table, slope]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}
