import type { Logger } from '../../shared/logger.js';
import { startEmbeddedDatabase } from './embedded.js';

export interface DatabaseHandle {
  url: string;
  embedded: boolean;
  stop(): Promise<void>;
}

/** DATABASE_URL when configured; otherwise the embedded cluster in the hub's data directory. */
export async function openDatabase(cfg: { databaseUrl?: string | undefined; dataDir: string }, log: Logger): Promise<DatabaseHandle> {
  if (cfg.databaseUrl) return { url: cfg.databaseUrl, embedded: false, stop: async () => {} };
  const db = await startEmbeddedDatabase(cfg.dataDir, log);
  return { url: db.url, embedded: true, stop: () => db.stop() };
}
