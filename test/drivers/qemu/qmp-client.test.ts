import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpClient, QmpCommandError, QmpError, type QmpEvent } from '../../../agent/drivers/qemu/qmp-client.js';
import { MiB, StorageDaemon } from '../../support/qemu.js';

describe('QmpClient against qemu-storage-daemon', () => {
  let qsd: StorageDaemon;
  let qmp: QmpClient;

  beforeAll(async () => {
    qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: 8 * MiB }], liveExports: false });
    qmp = await QmpClient.connect(qsd.driverQmpSocket);
  });
  afterAll(async () => {
    await qmp?.close();
    await qsd?.destroy();
  });

  it('reads the greeting and runs commands', async () => {
    expect(qmp.greeting.version.qemu.major).toBeGreaterThanOrEqual(7);
    const v = await qmp.execute<{ qemu: { major: number; minor: number } }>('query-version');
    expect(v.qemu).toEqual(qmp.greeting.version.qemu);
    const nodes = await qmp.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
    expect(nodes.map((n) => n['node-name']).sort()).toEqual(['disk0', 'disk0-file']);
  });

  it('turns QMP errors into typed exceptions with the error class and description', async () => {
    const err = await qmp.execute('blockdev-del', { 'node-name': 'nope' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ code: 'COMMAND_FAILED', command: 'blockdev-del', errorClass: 'GenericError', desc: expect.stringContaining("'nope'") });
    await expect(qmp.execute('block-job-cancel', { device: 'nope' })).rejects.toMatchObject({ errorClass: 'DeviceNotActive' });
    await expect(qmp.execute('no-such-command')).rejects.toMatchObject({ errorClass: 'CommandNotFound' });
    // The connection is still good after errors.
    await expect(qmp.execute('query-jobs')).resolves.toEqual([]);
  });

  it('delivers events to listeners: a cancelled block job', async () => {
    const seen: QmpEvent[] = [];
    const off = qmp.onEvent((e) => seen.push(e));
    await qmp.execute('blockdev-add', { driver: 'null-co', 'node-name': 'sink', size: 8 * MiB });
    await qmp.execute('blockdev-backup', { device: 'disk0', target: 'sink', sync: 'none', 'job-id': 'j1' });
    const cancelled = qmp.waitForEvent('BLOCK_JOB_CANCELLED', (e) => e.data.device === 'j1', 5_000);
    await qmp.execute('block-job-cancel', { device: 'j1' });
    const ev = await cancelled;
    expect(ev.data).toMatchObject({ device: 'j1', type: 'backup' });
    expect(ev.timestamp.seconds).toBeGreaterThan(0);
    off();
    expect(seen.some((e) => e.event === 'BLOCK_JOB_CANCELLED')).toBe(true);
    expect(seen.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => e.data.status)).toContain('concluded');
    await qmp.execute('blockdev-del', { 'node-name': 'sink' });
  });

  it('lets one client hold a monitor at a time: a second waits, then times out with a clear error', async () => {
    const err = await QmpClient.connect(qsd.driverQmpSocket, { connectTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpError);
    expect(err).toMatchObject({ code: 'HANDSHAKE_FAILED', message: expect.stringMatching(/another client holding this monitor/) });
  });

  it('fails to connect to a missing socket', async () => {
    await expect(QmpClient.connect(join(qsd.dir, 'nope.qmp'))).rejects.toMatchObject({ code: 'CONNECT_FAILED' });
  });
});

describe('QmpClient timeouts and close', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bh-qmp-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A monitor that greets, accepts capabilities, then answers `query-version` only. */
  async function silentMonitor(path: string) {
    const server = createServer((sock) => {
      sock.write('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}\r\n');
      let buf = '';
      sock.setEncoding('utf8').on('data', (c: string) => {
        buf += c;
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const m = JSON.parse(buf.slice(0, i)) as { execute: string; id: number };
          buf = buf.slice(i + 1);
          if (m.execute === 'qmp_capabilities' || m.execute === 'query-version') sock.write(`{"return": {}, "id": ${m.id}}\r\n`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(path, r));
    return server;
  }

  it('times out a command QEMU never answers, and stays usable', async () => {
    const server = await silentMonitor(join(dir, 'slow.qmp'));
    const qmp = await QmpClient.connect(join(dir, 'slow.qmp'));
    try {
      const t0 = Date.now();
      await expect(qmp.execute('query-jobs', undefined, { timeoutMs: 150 })).rejects.toMatchObject({ code: 'TIMEOUT', message: expect.stringMatching(/query-jobs/) });
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      await expect(qmp.execute('query-version')).resolves.toEqual({});
    } finally {
      await qmp.close();
      server.close();
    }
  });

  it('fails pending and later commands with CLOSED once closed', async () => {
    const server = await silentMonitor(join(dir, 'close.qmp'));
    const qmp = await QmpClient.connect(join(dir, 'close.qmp'));
    const pending = qmp.execute('query-jobs').catch((e: unknown) => e);
    await qmp.close();
    expect(await pending).toMatchObject({ code: 'CLOSED' });
    await expect(qmp.execute('query-version')).rejects.toMatchObject({ code: 'CLOSED' });
    expect(qmp.isClosed).toBe(true);
    await qmp.close(); // idempotent
    server.close();
  });
});
