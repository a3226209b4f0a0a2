/**
 * The hub's gRPC port advertises the HTTP/2 receive window it is configured with (grpc-js has no
 * server option for it; hub/grpc/server-flow-control.ts reaches into its internals, so this
 * checks the effect on the wire: the SETTINGS frame and the connection window update a client
 * actually receives).
 */
import { connect, type ClientHttp2Session } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Hub } from '../../hub/hub.js';
import { HUB_TLS_NAME } from '../../shared/grpc-options.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';

const WINDOW = 3 * 1024 * 1024;
let db: TestDatabase;
let hub: Hub;

beforeAll(async () => {
  db = await createTestDatabase('bh_window');
  hub = await startInProcessHub(db.url, { BACKHAUL_HUB_GRPC_WINDOW_BYTES: String(WINDOW) });
});

afterAll(async () => {
  await hub?.stop();
  await db?.drop();
});

describe('gRPC flow control', () => {
  it('advertises the configured per-stream window and opens the connection window to it', async () => {
    const session: ClientHttp2Session = connect(`https://127.0.0.1:${hub.port}`, { ca: hub.ca.certPem, servername: HUB_TLS_NAME });
    try {
      const settings = await new Promise<{ initialWindowSize?: number }>((resolve, reject) => {
        session.once('remoteSettings', resolve);
        session.once('error', reject);
      });
      expect(settings.initialWindowSize).toBe(WINDOW);
      // The connection window: what this client may send before the hub's first update.
      await new Promise((r) => setTimeout(r, 100));
      expect(session.state.remoteWindowSize).toBe(WINDOW);
    } finally {
      session.close();
    }
  });
});
