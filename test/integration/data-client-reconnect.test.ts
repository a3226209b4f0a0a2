/**
 * The agent's DataClient across a hub restart: real in-process hubs on one loopback port, real
 * gRPC with mTLS, real PostgreSQL. The data channel has its own connection and backoff, apart
 * from the control stream, so a call made while the hub is away must wait for it to come back
 * (within the connect wait) rather than fail a freshly dispatched job with UNAVAILABLE.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataClient, DataPlaneError } from '../../agent/data-client.js';
import { createJoinToken } from '../../hub/agents/join-tokens.js';
import type { Hub } from '../../hub/hub.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';
import { enrollRaw, type Enrolled } from '../support/raw-agent.js';

let db: TestDatabase;
let hub: Hub | null = null;
let port: number;
let agent: Enrolled;

/** What the call ends with: the hub's own error code proves the call reached a hub. */
const outcome = (p: Promise<unknown>) => p.then(() => 'answered', (err: unknown) => (err instanceof DataPlaneError ? err.code : String(err)));

beforeAll(async () => {
  db = await createTestDatabase();
  hub = await startInProcessHub(db.url);
  port = hub.port;
  const t = await createJoinToken(hub.orm.em.fork(), 60_000);
  agent = await enrollRaw(`127.0.0.1:${port}`, hub.ca.certPem, t.token, 'reconnect-agent');
});

afterAll(async () => {
  await hub?.stop();
  await db?.drop();
});

describe('DataClient across a hub restart', () => {
  it('a call made while the hub is down waits for it and gets the restarted hub’s answer', async () => {
    const data = new DataClient(`127.0.0.1:${port}`, agent, 1, 20_000);
    try {
      const digests = Buffer.alloc(32);
      // An unknown job: the hub answers JOB_NOT_FOUND, which only a reachable hub can say.
      expect(await outcome(data.missingChunks(randomUUID(), digests))).toBe('JOB_NOT_FOUND');

      await hub!.stop();
      hub = null;
      let settled = false;
      const during = outcome(data.missingChunks(randomUUID(), digests)).finally(() => (settled = true));
      await new Promise((r) => setTimeout(r, 1_500));
      expect(settled, 'the call must wait for the hub, not fail at once').toBe(false);

      hub = await startInProcessHub(db.url, { BACKHAUL_HUB_LISTEN: `127.0.0.1:${port}` });
      const started = Date.now();
      expect(await during).toBe('JOB_NOT_FOUND');
      // The channel's backoff is capped at 2 s, so the call goes through soon after the hub is back.
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      data.close();
    }
  });

  it('fails with HUB_UNREACHABLE once the connect wait passes without a hub', async () => {
    await hub?.stop();
    hub = null;
    const data = new DataClient(`127.0.0.1:${port}`, agent, 1, 1_000);
    try {
      const started = Date.now();
      const err = await data.openUploads(randomUUID()).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DataPlaneError);
      expect((err as DataPlaneError).code).toBe('HUB_UNREACHABLE');
      expect((err as DataPlaneError).message).toContain(`127.0.0.1:${port}`);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      data.close();
    }
  });
});
