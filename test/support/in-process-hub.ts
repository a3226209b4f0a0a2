import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../shared/logger.js';
import { loadHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';

/**
 * A real hub in the test process: real gRPC on a loopback port, real PostgreSQL. Used where a
 * test must reach inside (the session registry) in ways a separate process would not allow.
 */
export async function startInProcessHub(databaseUrl: string, env: Record<string, string> = {}): Promise<Hub> {
  const dataDir = await mkdtemp(join(tmpdir(), 'bh-hub-'));
  const cfg = loadHubConfig(undefined, {
    DATABASE_URL: databaseUrl,
    BACKHAUL_HUB_LISTEN: '127.0.0.1:0',
    BACKHAUL_HUB_HTTP_LISTEN: '127.0.0.1:0',
    BACKHAUL_HUB_DATA_DIR: dataDir,
    BACKHAUL_HUB_ID: `test-hub-${process.pid}`,
    ...env,
  });
  return Hub.start(cfg, createLogger('hub', process.env.TEST_LOG_LEVEL ?? 'silent'));
}
