import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { enrollAgent, eventually, freePort, startAgent, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';

const HEARTBEAT_MS = 500;
const GRACE_MS = 2_000;

let db: TestDatabase;
let opts: HubProcOptions;
let hub: Proc;
let agent: Proc;
let agentId: string;
let stateDir: string;

interface Row {
  online: boolean;
  session_epoch: number;
  last_seen_at: Date | null;
  connected_hub: string | null;
}
const row = async (): Promise<Row> => (await query<Row>(db.url, 'select online, session_epoch, last_seen_at, connected_hub from agents where id = $1', [agentId]))[0]!;
const waitOnline = (minEpoch: number, timeoutMs = 15_000) =>
  eventually(async () => {
    const r = await row();
    return r.online && r.session_epoch >= minEpoch ? r : null;
  }, timeoutMs, `agent online with epoch >= ${minEpoch}`);
const waitOffline = (timeoutMs: number) => eventually(async () => ((await row()).online ? null : true), timeoutMs, 'agent offline');

beforeAll(async () => {
  db = await createTestDatabase();
  opts = {
    port: await freePort(),
    dataDir: await tempDir('bh-hub'),
    databaseUrl: db.url,
    env: { BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS), BACKHAUL_HUB_HEARTBEAT_GRACE_MS: String(GRACE_MS), BACKHAUL_HUB_ID: 'hub-a' },
  };
  hub = await startHub(opts);
  stateDir = await tempDir('bh-agent');
  agentId = await enrollAgent(opts, stateDir, 'presence');
  agent = startAgent(stateDir);
  await waitOnline(1);
});

afterAll(async () => {
  await agent?.kill('SIGKILL');
  await hub?.kill('SIGKILL');
  await db?.drop();
});

describe('agent presence across faults (real hub and agent processes)', () => {
  it('coalesces last_seen_at: heartbeats alone do not write it more than once per flush interval', async () => {
    const before = await row();
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT_MS + 200));
    const after = await row();
    expect(agent.count('connected to hub')).toBeGreaterThanOrEqual(1);
    expect(after.last_seen_at?.getTime()).toBe(before.last_seen_at?.getTime());
    expect(after.online).toBe(true);
  });

  it('SIGKILL an agent: offline within the heartbeat grace; restarted, it is online again', async () => {
    const epoch = (await row()).session_epoch;
    await agent.kill('SIGKILL');
    const killedAt = Date.now();
    await waitOffline(GRACE_MS + 1_000);
    expect(Date.now() - killedAt).toBeLessThan(GRACE_MS + 1_000);
    agent = startAgent(stateDir);
    const r = await waitOnline(epoch + 1);
    expect(r.connected_hub).toBe('hub-a');
  });

  it('a frozen agent (SIGSTOP, socket open) is cut after the grace with HEARTBEAT_MISSED, and comes back after SIGCONT', async () => {
    const epoch = (await row()).session_epoch;
    agent.child.kill('SIGSTOP');
    try {
      const stoppedAt = Date.now();
      await waitOffline(GRACE_MS + 3_000);
      const elapsed = Date.now() - stoppedAt;
      expect(elapsed).toBeGreaterThanOrEqual(GRACE_MS - 100);
      expect(elapsed).toBeLessThan(GRACE_MS + 3_000);
      await hub.waitForMsg('closing agent stream', 5_000, (l) => l.code === 'HEARTBEAT_MISSED' && l.agent_id === agentId);
    } finally {
      agent.child.kill('SIGCONT');
    }
    await waitOnline(epoch + 1);
  });

  it('SIGTERM the hub: drain notice, exit within 10 s, agents reconnect on their own when it is back', async () => {
    const epoch = (await row()).session_epoch;
    const t0 = Date.now();
    const exit = await hub.kill('SIGTERM');
    const stopMs = Date.now() - t0;
    expect(exit.code).toBe(0);
    expect(stopMs).toBeLessThan(10_000);
    expect(hub.count('draining agent streams')).toBe(1);
    await agent.waitForMsg('hub asked to drain', 5_000);
    expect((await row()).online).toBe(false);
    hub = await startHub(opts);
    const r = await waitOnline(epoch + 1, 20_000);
    expect(r.connected_hub).toBe('hub-a');
    expect(agent.child.exitCode).toBeNull();
  });

  it('SIGKILL the hub: the restarted hub sets its old sessions offline, and the agent reconnects', async () => {
    const epoch = (await row()).session_epoch;
    await hub.kill('SIGKILL');
    // The dead hub could not record anything: the row still says online.
    expect((await row()).online).toBe(true);
    hub = await startHub(opts);
    const r = await waitOnline(epoch + 1, 20_000);
    expect(r.online).toBe(true);
    expect(hub.lines.some((l) => l.msg === 'marked agents of the previous hub run offline' || l.msg === 'agent connected')).toBe(true);
  });
});
