import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, NbdError } from '../../../agent/drivers/qemu/nbd-client.js';
import { CMD, IHAVEOPT, NBDMAGIC, OPTION_REPLY_MAGIC, OPT, REP, STATE_HOLE, STATE_ZERO } from '../../../agent/drivers/qemu/nbd-protocol.js';
import { MiB, StorageDaemon, sha256 } from '../../support/qemu.js';

const SIZE = 48 * MiB;

describe('NbdClient against qemu-storage-daemon', () => {
  let qsd: StorageDaemon;
  /** What the disk holds, kept in step with every write the tests make. */
  const expected = Buffer.alloc(SIZE);

  beforeAll(async () => {
    qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: SIZE, prefill: [{ offset: 0, length: 2 * MiB, pattern: 0x5a }] }] });
    expected.fill(0x5a, 0, 2 * MiB);
  });
  afterAll(async () => {
    await qsd?.destroy();
  });

  const connect = (metaContexts: string[] = ['base:allocation']) =>
    NbdClient.connect({ address: { path: qsd.nbdSocket }, exportName: 'live-disk0', metaContexts });

  it('negotiates structured replies, the export size, block size limits and metadata contexts', async () => {
    const c = await connect();
    try {
      expect(c.size).toBe(SIZE);
      expect(c.structuredReplies).toBe(true);
      expect(c.readOnly).toBe(false);
      expect(c.metaContexts.has('base:allocation')).toBe(true);
      // QEMU states its limits with NBD_INFO_BLOCK_SIZE: 32 MiB payloads at most.
      expect(c.blockSize.maximum).toBe(32 * MiB);
      expect(c.blockSize.minimum).toBeGreaterThanOrEqual(1);
    } finally {
      await c.close();
    }
  });

  it('reads holes as zeros and data as written', async () => {
    const c = await connect();
    try {
      const status = await c.blockStatus(8 * MiB, MiB);
      expect(status.get('base:allocation')![0]!.flags & (STATE_HOLE | STATE_ZERO)).toBe(STATE_HOLE | STATE_ZERO);
      const hole = await c.read(8 * MiB, MiB);
      expect(hole.equals(Buffer.alloc(MiB))).toBe(true);
      const mixed = await c.read(2 * MiB - 4096, 8192); // half data, half hole
      expect(mixed.equals(expected.subarray(2 * MiB - 4096, 2 * MiB + 4096))).toBe(true);
      expect(mixed[0]).toBe(0x5a);
      expect(mixed[8191]).toBe(0);
    } finally {
      await c.close();
    }
  });

  it('splits a read above the server maximum and keeps many requests in flight', async () => {
    const c = await connect();
    try {
      const data = randomBytes(5 * MiB + 123);
      await c.write(3 * MiB + 7, data);
      data.copy(expected, 3 * MiB + 7);

      // 40 MiB exceeds the 32 MiB maximum payload: two requests, one buffer.
      const big = await c.read(4 * MiB, 40 * MiB);
      expect(sha256(big)).toBe(sha256(expected.subarray(4 * MiB, 44 * MiB)));

      const ranges = Array.from({ length: 64 }, (_, i) => ({ offset: (i * 701_311) % (SIZE - 300_000), length: 1 + ((i * 7919) % 300_000) }));
      const reads = ranges.map((r) => c.read(r.offset, r.length));
      expect(c.inFlight).toBe(64);
      const results = await Promise.all(reads);
      results.forEach((b, i) => expect(b.equals(expected.subarray(ranges[i]!.offset, ranges[i]!.offset + ranges[i]!.length))).toBe(true));
    } finally {
      await c.close();
    }
  });

  it('returns block status extents that add up to the requested length', async () => {
    const c = await connect();
    try {
      for (const [offset, length] of [
        [0, SIZE],
        [MiB + 512, 3 * MiB],
        [2 * MiB - 1, 2],
        [SIZE - 4096, 4096],
      ] as const) {
        const extents = (await c.blockStatus(offset, length)).get('base:allocation')!;
        expect(extents[0]!.offset).toBe(offset);
        for (let i = 1; i < extents.length; i++) expect(extents[i]!.offset).toBe(extents[i - 1]!.offset + extents[i - 1]!.length);
        // QEMU describes the whole range here; the protocol allows less, never more.
        expect(extents.reduce((n, e) => n + e.length, 0)).toBe(length);
      }
      const all: { offset: number; length: number; flags: number }[] = [];
      for await (const e of c.extents('base:allocation')) all.push(e);
      expect(all.reduce((n, e) => n + e.length, 0)).toBe(SIZE);
      expect(all[0]).toMatchObject({ offset: 0, flags: 0 });
    } finally {
      await c.close();
    }
  });

  it('reports server-side errors with errno and message, and a server that hangs up (EIO injected by blkdebug)', async () => {
    // QEMU 7.2 answers a failed block status with an error chunk, but drops the client when a
    // sparse read fails mid-reply. Both must reach the caller as such.
    for (const [name, iotype] of [
      ['bs-fails', 'block-status'],
      ['read-fails', 'read'],
    ] as const) {
      await qsd.qmp.execute('blockdev-add', { driver: 'blkdebug', 'node-name': name, image: 'disk0', 'inject-error': [{ event: 'none', iotype, errno: 5 }] });
      await qsd.qmp.execute('block-export-add', { type: 'nbd', id: name, 'node-name': name, name, writable: false });
    }
    const bs = await NbdClient.connect({ address: { path: qsd.nbdSocket }, exportName: 'bs-fails', metaContexts: ['base:allocation'] });
    const rd = await NbdClient.connect({ address: { path: qsd.nbdSocket }, exportName: 'read-fails' });
    try {
      expect(bs.readOnly).toBe(true);
      const err = await bs.blockStatus(0, 4096).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NbdError);
      expect(err).toMatchObject({ code: 'COMMAND_FAILED', errno: 5, message: expect.stringMatching(/BLOCK_STATUS of 4096 bytes at 0 failed: EIO \(can't get block status\)/) });
      // QEMU checks for holes before reading, so the read fails the same way; the connection survives.
      await expect(bs.read(0, 4096)).rejects.toMatchObject({ code: 'COMMAND_FAILED', errno: 5 });
      await expect(bs.write(0, Buffer.alloc(512))).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/read-only/) });
      expect(bs.size).toBe(SIZE);

      await expect(rd.read(0, 4096)).rejects.toMatchObject({ code: 'CLOSED', message: expect.stringMatching(/closed the connection/) });
      await expect(rd.read(0, 1)).rejects.toMatchObject({ code: 'CLOSED' });
    } finally {
      await bs.close();
      await rd.close();
      for (const name of ['bs-fails', 'read-fails']) {
        await qsd.qmp.execute('block-export-del', { id: name, mode: 'hard' });
      }
    }
  });

  it('names what the server refused: unknown export, unknown metadata context, out-of-range request', async () => {
    await expect(NbdClient.connect({ address: { path: qsd.nbdSocket }, exportName: 'nope' })).rejects.toMatchObject({
      code: 'EXPORT_NOT_FOUND',
      message: expect.stringContaining('"nope"'),
    });
    await expect(connect(['base:allocation', 'qemu:dirty-bitmap:absent'])).rejects.toMatchObject({
      code: 'META_CONTEXT_REFUSED',
      message: expect.stringContaining('qemu:dirty-bitmap:absent'),
    });
    await expect(NbdClient.connect({ address: { path: join(qsd.dir, 'no.sock') }, exportName: 'x' })).rejects.toMatchObject({ code: 'CONNECT_FAILED' });
    const c = await connect();
    try {
      await expect(c.read(SIZE - 10, 20)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    } finally {
      await c.close();
    }
    await expect(c.read(0, 1)).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

/**
 * A scripted NBD server for what QEMU never does: protocol violations. It negotiates like a
 * real server (structured replies, one export of `size` bytes) and hands each transmission-phase
 * request to `onRequest`.
 */
async function fakeServer(
  listen: { path: string } | { port: 0 },
  onRequest: (sock: Socket, req: { type: number; cookie: Buffer; offset: bigint; length: number }) => void,
  greeting?: Buffer,
): Promise<{ server: Server; address: { path: string } | { host: string; port: number }; requests: number[] }> {
  const requests: number[] = [];
  const server = createServer((sock) => {
    if (greeting) return void sock.end(greeting);
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBDMAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(1 | 2, 16);
    sock.write(hello);
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    const reply = (opt: number, type: number, data = Buffer.alloc(0)) => {
      const h = Buffer.alloc(20);
      h.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
      h.writeUInt32BE(opt, 8);
      h.writeUInt32BE(type, 12);
      h.writeUInt32BE(data.length, 16);
      sock.write(Buffer.concat([h, data]));
    };
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16) return;
          const len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          const opt = buf.readUInt32BE(8);
          buf = buf.subarray(16 + len);
          if (opt === OPT.GO) {
            const info = Buffer.alloc(12);
            info.writeUInt16BE(0, 0);
            info.writeBigUInt64BE(1n * BigInt(MiB), 2);
            info.writeUInt16BE(1 | 2, 10); // has flags, read-only
            reply(opt, REP.INFO, info);
            reply(opt, REP.ACK);
            phase = 'transmission';
          } else reply(opt, REP.ACK);
        } else {
          if (buf.length < 28) return;
          const type = buf.readUInt16BE(6);
          const req = { type, cookie: Buffer.from(buf.subarray(8, 16)), offset: buf.readBigUInt64BE(16), length: buf.readUInt32BE(24) };
          buf = buf.subarray(28);
          requests.push(type);
          onRequest(sock, req);
        }
      }
    });
    sock.on('error', () => {}); // the client may drop the connection mid-reply; that is the point
  });
  await new Promise<void>((r) => ('path' in listen ? server.listen(listen.path, r) : server.listen(0, '127.0.0.1', r)));
  const a = server.address();
  const address = 'path' in listen ? { path: listen.path } : { host: '127.0.0.1', port: typeof a === 'object' && a ? a.port : 0 };
  return { server, address, requests };
}

function chunk(type: number, flags: number, cookie: Buffer, payload: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(0x668e33ef, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  cookie.copy(h, 8);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

describe('NbdClient against a misbehaving server', () => {
  const dir = `/tmp/bh-nbd-fake-${process.pid}`;
  beforeAll(async () => {
    await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
  });
  afterAll(async () => {
    await import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true }));
  });

  it('rejects a peer that is not an NBD server', async () => {
    const { server, address } = await fakeServer({ path: join(dir, 'http.sock') }, () => {}, Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
    try {
      await expect(NbdClient.connect({ address, exportName: 'x' })).rejects.toMatchObject({ code: 'HANDSHAKE_FAILED', message: expect.stringMatching(/not an NBD server/) });
    } finally {
      server.close();
    }
  });

  it('fails every request in flight on a bad reply magic, and says so', async () => {
    const { server, address } = await fakeServer({ path: join(dir, 'magic.sock') }, (sock) => sock.write(Buffer.from('deadbeefdeadbeefdeadbeef', 'hex')));
    try {
      const c = await NbdClient.connect({ address, exportName: 'x' });
      const [a, b] = await Promise.all([c.read(0, 512).catch((e: unknown) => e), c.read(512, 512).catch((e: unknown) => e)]);
      for (const e of [a, b]) expect(e).toMatchObject({ code: 'PROTOCOL_VIOLATION', message: expect.stringMatching(/bad reply magic 0xdeadbeef/) });
      await expect(c.read(0, 1)).rejects.toMatchObject({ code: 'PROTOCOL_VIOLATION' });
      await c.close();
    } finally {
      server.close();
    }
  });

  it('rejects a read reply that leaves part of the range uncovered', async () => {
    const { server, address } = await fakeServer({ path: join(dir, 'short.sock') }, (sock, req) => {
      const p = Buffer.alloc(8 + 100);
      p.writeBigUInt64BE(req.offset, 0);
      sock.write(chunk(1 /* OFFSET_DATA */, 1 /* DONE */, req.cookie, p));
    });
    try {
      const c = await NbdClient.connect({ address, exportName: 'x' });
      await expect(c.read(0, 512)).rejects.toMatchObject({ code: 'PROTOCOL_VIOLATION', message: expect.stringMatching(/covered 100 of 512 bytes/) });
      await c.close();
    } finally {
      server.close();
    }
  });

  it('rejects data placed outside the requested range', async () => {
    const { server, address } = await fakeServer({ path: join(dir, 'outside.sock') }, (sock, req) => {
      const p = Buffer.alloc(8 + 512);
      p.writeBigUInt64BE(req.offset + 4096n, 0);
      sock.write(chunk(1, 1, req.cookie, p));
    });
    try {
      const c = await NbdClient.connect({ address, exportName: 'x' });
      await expect(c.read(0, 512)).rejects.toMatchObject({ code: 'PROTOCOL_VIOLATION', message: expect.stringMatching(/outside the request/) });
      await c.close();
    } finally {
      server.close();
    }
  });

  it('works over TCP, assembles data and hole chunks, and sends NBD_CMD_DISC on close', async () => {
    const { server, address, requests } = await fakeServer({ port: 0 }, (sock, req) => {
      if (req.type !== CMD.READ) return;
      // Second half first: chunks may come in any order.
      const hole = Buffer.alloc(12);
      hole.writeBigUInt64BE(req.offset + BigInt(req.length / 2), 0);
      hole.writeUInt32BE(req.length / 2, 8);
      sock.write(chunk(2 /* OFFSET_HOLE */, 0, req.cookie, hole));
      const data = Buffer.alloc(8 + req.length / 2, 0x77);
      data.writeBigUInt64BE(req.offset, 0);
      sock.write(chunk(1, 1, req.cookie, data));
    });
    try {
      expect('host' in address).toBe(true);
      const c = await NbdClient.connect({ address, exportName: 'x' });
      expect(c.size).toBe(MiB);
      expect(c.readOnly).toBe(true);
      const b = await c.read(4096, 1024);
      expect(b.subarray(0, 512).every((x) => x === 0x77)).toBe(true);
      expect(b.subarray(512).every((x) => x === 0)).toBe(true);
      await c.close();
      await new Promise((r) => setTimeout(r, 50));
      expect(requests).toEqual([CMD.READ, CMD.DISC]);
    } finally {
      server.close();
    }
  });
});
