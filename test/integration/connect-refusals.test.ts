import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJoinToken } from '../../hub/agents/join-tokens.js';
import type { Hub } from '../../hub/hub.js';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';
import { enrollRaw, rawStream, type Enrolled, type RawStream } from '../support/raw-agent.js';

let db: TestDatabase;
let hub: Hub;
let address: string;
let healthy: Enrolled;
let healthyStream: RawStream;

async function enrollOne(name: string): Promise<Enrolled> {
  const t = await createJoinToken(hub.orm.em.fork(), 60_000);
  return enrollRaw(address, hub.ca.certPem, t.token, name);
}

beforeAll(async () => {
  db = await createTestDatabase();
  hub = await startInProcessHub(db.url, { BACKHAUL_HUB_HELLO_TIMEOUT_MS: '1500' });
  address = `127.0.0.1:${hub.port}`;
  healthy = await enrollOne('healthy');
  healthyStream = rawStream(address, healthy);
  healthyStream.hello({ agentId: healthy.agentId });
  await healthyStream.helloAck();
});

afterAll(async () => {
  healthyStream?.close();
  await hub?.stop();
  await db?.drop();
});

/** After each refusal the healthy agent must still be served: a heartbeat and a command round trip. */
async function expectHealthyServed(): Promise<void> {
  healthyStream.send({ $case: 'heartbeat', value: { sentAt: new Date(), runningJobs: 0 } });
  const from = healthyStream.received.length;
  const ackPromise = hub.registry.sendCommand(healthy.agentId, { $case: 'refreshInventory', value: {} }, 5_000, `probe-${Date.now()}-${Math.random()}`);
  const cmd = await healthyStream.next((f) => f.frame?.$case === 'command', 5_000, from);
  if (cmd.frame?.$case !== 'command') throw new Error('expected a command');
  healthyStream.send({ $case: 'commandAck', value: { commandId: cmd.frame.value.commandId, accepted: true, errorCode: '', message: '' } });
  expect((await ackPromise).accepted).toBe(true);
  const [row] = await query<{ online: boolean }>(db.url, 'select online from agents where id = $1', [healthy.agentId]);
  expect(row!.online).toBe(true);
}

describe('Connect refusals close the stream with a proper status while the hub keeps serving', () => {
  it('refuses a stream without a client certificate with UNAUTHENTICATED', async () => {
    const s = rawStream(address, { caPem: hub.ca.certPem });
    s.hello({ agentId: healthy.agentId });
    const end = await s.ended;
    expect(end.code).toBe(status.UNAUTHENTICATED);
    expect(end.errorCode).toBe('CLIENT_CERT_REQUIRED');
    s.close();
    await expectHealthyServed();
  });

  it('refuses a Hello whose agent id is not the certificate’s with PERMISSION_DENIED', async () => {
    const other = await enrollOne('other');
    const s = rawStream(address, other);
    s.hello({ agentId: healthy.agentId });
    const end = await s.ended;
    expect(end.code).toBe(status.PERMISSION_DENIED);
    expect(end.errorCode).toBe('AGENT_ID_MISMATCH');
    expect(end.details).toContain(other.agentId);
    s.close();
    await expectHealthyServed();
  });

  it('refuses a first frame that is not Hello with FAILED_PRECONDITION', async () => {
    const e = await enrollOne('no-hello');
    const s = rawStream(address, e);
    s.send({ $case: 'heartbeat', value: { sentAt: new Date(), runningJobs: 0 } });
    const end = await s.ended;
    expect(end.code).toBe(status.FAILED_PRECONDITION);
    expect(end.details).toMatch(/first frame must be Hello/);
    s.close();
    await expectHealthyServed();
  });

  it('refuses a second Hello with FAILED_PRECONDITION and sets the agent offline', async () => {
    const e = await enrollOne('twice');
    const s = rawStream(address, e);
    s.hello({ agentId: e.agentId });
    await s.helloAck();
    s.hello({ agentId: e.agentId });
    const end = await s.ended;
    expect(end.code).toBe(status.FAILED_PRECONDITION);
    expect(end.details).toMatch(/already received/);
    s.close();
    await expect.poll(async () => (await query(db.url, 'select online from agents where id = $1', [e.agentId]))[0]!.online).toBe(false);
    await expectHealthyServed();
  });

  it('refuses a disabled agent with PERMISSION_DENIED and leaves it offline', async () => {
    const e = await enrollOne('disabled');
    await query(db.url, 'update agents set disabled = true where id = $1', [e.agentId]);
    const s = rawStream(address, e);
    s.hello({ agentId: e.agentId });
    const end = await s.ended;
    expect(end.code).toBe(status.PERMISSION_DENIED);
    expect(end.errorCode).toBe('AGENT_DISABLED');
    const [row] = await query<{ online: boolean; session_epoch: number }>(db.url, 'select online, session_epoch from agents where id = $1', [e.agentId]);
    expect(row).toEqual({ online: false, session_epoch: 0 });
    s.close();
    await expectHealthyServed();
  });

  it('refuses an undecodable frame and an empty frame with INVALID_ARGUMENT', async () => {
    const e = await enrollOne('garbage');
    const s = rawStream(address, e);
    // Bytes that are not a valid ConnectRequest: field 1, wire type 2, with a length past the end.
    const garbage = s.client.makeBidiStreamRequest('/backhaul.v1.AgentService/Connect', (b: Buffer) => b, (b: Buffer) => b);
    const garbageEnd = new Promise<{ code: number; details: string }>((resolve) => garbage.on('error', (err: { code: number; details: string }) => resolve(err)));
    garbage.write(Buffer.from([0x0a, 0x7f, 0x01]));
    const end1 = await garbageEnd;
    expect(end1.code).toBe(status.INVALID_ARGUMENT);
    expect(end1.details).toMatch(/MALFORMED_FRAME/);

    const s2 = rawStream(address, e);
    s2.call.write({});
    const end2 = await s2.ended;
    expect(end2.code).toBe(status.INVALID_ARGUMENT);
    expect(end2.details).toMatch(/carries no message/);
    s.close();
    s2.close();
    await expectHealthyServed();
  });

  it('closes a stream that never says Hello with DEADLINE_EXCEEDED', async () => {
    const e = await enrollOne('silent');
    const started = Date.now();
    // grpc-js opens the HTTP/2 stream at once; the agent then sends nothing at all.
    const quiet = rawStream(address, e);
    const quietEnd = await quiet.ended;
    expect(quietEnd.code).toBe(status.DEADLINE_EXCEEDED);
    expect(quietEnd.errorCode).toBe('HELLO_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(10_000);
    quiet.close();
    await expectHealthyServed();
  });
});

describe('sessions', () => {
  it('a new stream from the same agent replaces the old one, fenced by a higher epoch', async () => {
    const e = await enrollOne('replaced');
    const first = rawStream(address, e);
    first.hello({ agentId: e.agentId });
    const ack1 = await first.helloAck();
    const second = rawStream(address, e);
    second.hello({ agentId: e.agentId });
    const ack2 = await second.helloAck();
    const epoch1 = ack1.frame?.$case === 'helloAck' ? ack1.frame.value.sessionEpoch : -1;
    const epoch2 = ack2.frame?.$case === 'helloAck' ? ack2.frame.value.sessionEpoch : -1;
    expect(epoch2).toBe(epoch1 + 1);
    const end = await first.ended;
    expect(end.code).toBe(status.ABORTED);
    expect(end.errorCode).toBe('SESSION_REPLACED');
    // The old session's offline write is fenced by the epoch: the agent stays online.
    await new Promise((r) => setTimeout(r, 300));
    const [row] = await query<{ online: boolean; session_epoch: number }>(db.url, 'select online, session_epoch from agents where id = $1', [e.agentId]);
    expect(row).toEqual({ online: true, session_epoch: epoch2 });
    first.close();
    second.close();
    await expect.poll(async () => (await query(db.url, 'select online from agents where id = $1', [e.agentId]))[0]!.online).toBe(false);
  });

  it('refuses events about jobs the hub does not know, and keeps the stream open', async () => {
    healthyStream.send({ $case: 'jobEvent', value: { seq: 7, jobId: 'no-such-job', at: new Date(), event: undefined } });
    const ack = await healthyStream.next((f) => f.frame?.$case === 'eventAck');
    expect(ack.frame).toMatchObject({ $case: 'eventAck', value: { seq: 7, disposition: 3 } });
    await expectHealthyServed();
  });

  it('records inventory updates and the Hello’s capabilities', async () => {
    const e = await enrollOne('inventory');
    const s = rawStream(address, e);
    s.hello({ agentId: e.agentId, capabilities: { drivers: ['file'], maxConcurrentJobs: 3 } });
    await s.helloAck();
    s.send({ $case: 'inventoryUpdate', value: { inventory: [{ id: 'vm1', name: 'vm one', driver: 'file', disks: [{ name: 'sda', path: '/img', sizeBytes: 1024 }] }] } });
    await expect
      .poll(async () => (await query(db.url, 'select inventory, capabilities from agents where id = $1', [e.agentId]))[0])
      .toEqual({
        inventory: [{ id: 'vm1', name: 'vm one', driver: 'file', disks: [{ name: 'sda', path: '/img', sizeBytes: 1024 }] }],
        capabilities: { drivers: ['file'], maxConcurrentJobs: 3 },
      });
    s.close();
  });
});
