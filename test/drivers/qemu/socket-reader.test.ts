/**
 * SocketReader over a real unix socket: exact-length reads, payloads read by the kernel straight
 * into their destination (not through a buffer of the reader's), a payload whose start arrives
 * with its header, and a peer that closes mid-payload.
 */
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketReader } from '../../../agent/drivers/qemu/socket-reader.js';
import { tempDir } from '../../support/processes.js';

let server: Server | null = null;
let client: Socket | null = null;
afterEach(async () => {
  client?.destroy();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = client = null;
});

/** A reader on a socket whose peer writes `send` (then closes if `close`); records where each socket read went. */
async function connect(send: (peer: Socket) => void) {
  const path = join(await tempDir('bh-sr'), 's.sock');
  server = createServer(send);
  await new Promise<void>((r) => server!.listen(path, r));
  const reader = new SocketReader(() => new Error('peer closed'));
  const reads: Uint8Array[] = [];
  const next = reader.onread.buffer as () => Uint8Array;
  const onread = { ...reader.onread, buffer: () => {
    const b = next();
    reads.push(b);
    return b;
  } };
  client = createConnection({ path, onread });
  reader.attach(client);
  return { reader, reads };
}

const header = (n: number) => {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(n, 4);
  return h;
};

describe('SocketReader', () => {
  it('reads headers and payloads exactly, the payloads straight into their destinations', async () => {
    const a = randomBytes(3 << 20);
    const b = randomBytes(1 << 20);
    // One write: each header arrives with the start of its payload, as NBD replies do.
    const { reader, reads } = await connect((peer) => peer.end(Buffer.concat([header(a.length), a, header(b.length), b])));
    const dstA = Buffer.alloc(a.length);
    const dstB = Buffer.from(new SharedArrayBuffer(b.length)); // the pipeline reads into shared memory
    expect((await reader.read(8)).readUInt32BE(4)).toBe(a.length);
    expect(await reader.readInto(dstA)).toBe(dstA);
    expect((await reader.read(8)).readUInt32BE(4)).toBe(b.length);
    await reader.readInto(dstB);
    expect(dstA.equals(a)).toBe(true);
    expect(dstB.equals(b)).toBe(true);
    expect(reader.pending).toBe(0);
    // Nearly every read of the 4 MiB went into a destination, not into the reader's own buffer.
    const direct = reads.filter((r) => r.buffer === dstA.buffer || r.buffer === dstB.buffer).length;
    expect(direct).toBeGreaterThan(0.8 * reads.length);
  });

  it('rejects a read cut short by the peer closing, with the reader’s end error', async () => {
    const { reader } = await connect((peer) => peer.end(Buffer.concat([header(1 << 20), randomBytes(1000)])));
    await reader.read(8);
    await expect(reader.readInto(Buffer.alloc(1 << 20))).rejects.toThrow('peer closed');
    await expect(reader.read(1)).rejects.toThrow('peer closed');
  });
});
