import { createConnection, type Socket } from 'node:net';
import { NbdError } from './nbd-error.js';
import { negotiate, toSafeNumber, type BlockSizeConstraints } from './nbd-handshake.js';
import {
  CHUNK,
  CHUNK_ERROR_BIT,
  CMD,
  CMD_FLAG,
  REPLY_FLAG_DONE,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  TFLAG,
  errnoName,
  type NbdCommand,
} from './nbd-protocol.js';
import { SocketReader } from './socket-reader.js';

export { NbdError, type NbdErrorCode } from './nbd-error.js';
export type { BlockSizeConstraints } from './nbd-handshake.js';

/** A unix socket path, or a TCP host and port. */
export type NbdAddress = { path: string } | { host: string; port: number };

export interface NbdConnectOptions {
  address: NbdAddress;
  exportName: string;
  /** Metadata contexts to select, e.g. `base:allocation`, `qemu:dirty-bitmap:NAME`. All must be granted. */
  metaContexts?: readonly string[];
  /**
   * Limit for the connect, the handshake and each request. NBD cannot cancel a request, so a
   * request that times out drops the whole connection. Default 60 s.
   */
  timeoutMs?: number;
}

/** One block status descriptor, placed at its absolute offset. */
export interface StatusExtent {
  offset: number;
  length: number;
  flags: number;
}

interface Pending {
  cmd: NbdCommand;
  offset: number;
  length: number;
  /** READ: where the data goes (a slice of the caller's buffer). */
  buf?: Buffer;
  /** READ: bytes the reply chunks have covered so far. */
  covered: number;
  /** BLOCK_STATUS: extents per context id. */
  statuses?: Map<number, StatusExtent[]>;
  error?: NbdError;
  timer: NodeJS.Timeout;
  resolve: (v: Buffer | Map<number, StatusExtent[]> | null) => void;
  reject: (e: Error) => void;
}

const HEADER_REST = 12; // simple reply after the magic: errno u32, cookie u64
const CHUNK_REST = 16; // structured chunk after the magic: flags u16, type u16, cookie u64, length u32
/** Block status requests are cut at 2 GiB: the length field is 32 bits and stays aligned. */
const STATUS_REQUEST_MAX = 0x80000000;
/** Non-data chunks are small; a larger length means the stream is corrupt. */
const MAX_CONTROL_CHUNK = 64 << 20;

/**
 * An NBD client for one export: fixed newstyle handshake, structured replies, metadata
 * contexts, and pipelined requests matched to replies by cookie. It speaks to QEMU's NBD
 * server (and any server that follows the protocol) over a unix socket or TCP.
 */
export class NbdClient {
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private failure: NbdError | null = null;
  private closing: Promise<void> | null = null;
  private readonly contextNames: Map<number, string>;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    readonly exportName: string,
    /** Export size in bytes. */
    readonly size: number,
    readonly transmissionFlags: number,
    readonly structuredReplies: boolean,
    /** Granted metadata contexts by name, with the server's id for each. */
    readonly metaContexts: ReadonlyMap<string, number>,
    readonly blockSize: BlockSizeConstraints,
    private readonly timeoutMs: number,
  ) {
    this.contextNames = new Map([...metaContexts].map(([name, id]) => [id, name]));
    void this.receiveLoop();
  }

  static async connect(opts: NbdConnectOptions): Promise<NbdClient> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const where = 'path' in opts.address ? opts.address.path : `${opts.address.host}:${opts.address.port}`;
    const reader = new SocketReader(() => new NbdError('CLOSED', `NBD server at ${where} closed the connection`));
    const { onread } = reader;
    const socket = 'path' in opts.address ? createConnection({ path: opts.address.path, onread }) : createConnection({ host: opts.address.host, port: opts.address.port, onread });
    reader.attach(socket);
    const timer = setTimeout(() => socket.destroy(new NbdError('TIMEOUT', `NBD handshake with ${where} took over ${timeoutMs} ms`)), timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', (err) => reject(new NbdError('CONNECT_FAILED', `cannot connect to NBD server at ${where}: ${err.message}`)));
      });
      if ('host' in opts.address) socket.setNoDelay(true);
      const n = await negotiate(socket, reader, opts.exportName, opts.metaContexts ?? []);
      return new NbdClient(socket, reader, opts.exportName, n.size, n.transmissionFlags, n.structuredReplies, n.metaContexts, n.blockSize, timeoutMs);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get readOnly(): boolean {
    return (this.transmissionFlags & TFLAG.READ_ONLY) !== 0;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Reads exactly `length` bytes at `offset`. Requests above the server's maximum payload are
   * split, and the parts are sent together (pipelined). Holes arrive as zeros. Into `into`
   * (exactly `length` bytes) when given.
   */
  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkRange('read', offset, length);
    if (into && into.length !== length) throw new NbdError('BAD_REQUEST', `read of ${length} bytes into a buffer of ${into.length}`);
    const out = into ?? Buffer.allocUnsafe(length);
    const parts: Promise<unknown>[] = [];
    for (const [at, len] of this.split(offset, length)) {
      parts.push(this.send(CMD.READ, 0, at, len, undefined, out.subarray(at - offset, at - offset + len)));
    }
    await Promise.all(parts);
    return out;
  }

  /** Writes `data` at `offset` (split at the server's maximum payload); `fua` forces it to stable storage. */
  async write(offset: number, data: Buffer, opts: { fua?: boolean } = {}): Promise<void> {
    this.checkRange('write', offset, data.length);
    if (this.readOnly) throw new NbdError('BAD_REQUEST', `export "${this.exportName}" is read-only`);
    const flags = opts.fua && this.transmissionFlags & TFLAG.SEND_FUA ? CMD_FLAG.FUA : 0;
    await Promise.all(this.split(offset, data.length).map(([at, len]) => this.send(CMD.WRITE, flags, at, len, data.subarray(at - offset, at - offset + len))));
  }

  async flush(): Promise<void> {
    if (!(this.transmissionFlags & TFLAG.SEND_FLUSH)) return;
    await this.send(CMD.FLUSH, 0, 0, 0);
  }

  /**
   * One NBD_CMD_BLOCK_STATUS request. Returns the extents per granted context name. The server
   * may describe less than `length` (never nothing); extents are clipped to the request.
   */
  async blockStatus(offset: number, length: number): Promise<Map<string, StatusExtent[]>> {
    this.checkRange('block status', offset, length);
    if (this.metaContexts.size === 0) throw new NbdError('BAD_REQUEST', 'block status needs a metadata context, and none was selected');
    if (length === 0 || length > 0xffffffff) throw new NbdError('BAD_REQUEST', `block status length ${length} outside 1..2^32-1`);
    const byId = (await this.send(CMD.BLOCK_STATUS, 0, offset, length)) as Map<number, StatusExtent[]>;
    const out = new Map<string, StatusExtent[]>();
    for (const [id, extents] of byId) out.set(this.contextNames.get(id)!, extents);
    return out;
  }

  /**
   * All extents of one context over [offset, offset + length), in order, each run of equal
   * flags merged. Loops over block status requests until the range is covered.
   */
  async *extents(context: string, offset = 0, length = this.size - offset): AsyncGenerator<StatusExtent> {
    if (!this.metaContexts.has(context)) throw new NbdError('BAD_REQUEST', `metadata context "${context}" was not selected`);
    let pos = offset;
    const end = offset + length;
    let run: StatusExtent | null = null;
    while (pos < end) {
      const status = await this.blockStatus(pos, Math.min(end - pos, STATUS_REQUEST_MAX));
      const extents = status.get(context);
      if (!extents || extents.length === 0) throw this.violation(`block status at ${pos} has no extent for "${context}"`);
      for (const e of extents) {
        if (run && run.flags === e.flags && run.offset + run.length === e.offset) run.length += e.length;
        else {
          if (run) yield run;
          run = { ...e };
        }
        pos = e.offset + e.length;
      }
    }
    if (run) yield run;
  }

  /**
   * Waits for requests in flight, sends NBD_CMD_DISC and closes the socket. Safe to call more
   * than once and after the connection failed.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const inFlight = [...this.pending.values()].map(
        (p) =>
          new Promise<void>((resolve) => {
            const { resolve: res, reject: rej } = p;
            p.resolve = (v) => (res(v), resolve());
            p.reject = (e) => (rej(e), resolve());
          }),
      );
      await Promise.all(inFlight);
      if (!this.failure && !this.socket.destroyed) {
        this.socket.write(this.header(CMD.DISC, 0, this.nextCookie++, 0, 0));
        this.socket.end();
      }
      this.failure ??= new NbdError('CLOSED', `NBD connection to "${this.exportName}" is closed`);
      if (!this.socket.destroyed) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => this.socket.destroy(), 5_000);
          this.socket.once('close', () => (clearTimeout(t), resolve()));
        });
      }
    })();
    return this.closing;
  }

  private checkRange(what: string, offset: number, length: number): void {
    if (this.failure) throw this.failure;
    if (this.closing) throw new NbdError('CLOSED', `NBD connection to "${this.exportName}" is closing`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new NbdError('BAD_REQUEST', `${what} of ${length} bytes at ${offset} is outside the export (${this.size} bytes)`);
    }
    const min = this.blockSize.minimum;
    if (min > 1 && (offset % min !== 0 || length % min !== 0)) {
      throw new NbdError('BAD_REQUEST', `${what} of ${length} bytes at ${offset} is not aligned to the server's minimum block size ${min}`);
    }
  }

  /** Cuts [offset, offset + length) into pieces of at most the server's maximum payload. */
  private split(offset: number, length: number): [number, number][] {
    const max = Math.max(this.blockSize.minimum, this.blockSize.maximum - (this.blockSize.maximum % this.blockSize.minimum));
    const parts: [number, number][] = [];
    for (let at = offset; at < offset + length; at += max) parts.push([at, Math.min(max, offset + length - at)]);
    return parts;
  }

  private header(cmd: NbdCommand, flags: number, cookie: bigint, offset: number, length: number): Buffer {
    const h = Buffer.allocUnsafe(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(cmd, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    return h;
  }

  private send(cmd: NbdCommand, flags: number, offset: number, length: number, data?: Buffer, buf?: Buffer): Promise<Buffer | Map<number, StatusExtent[]> | null> {
    if (this.failure) return Promise.reject(this.failure);
    const cookie = this.nextCookie++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new NbdError('TIMEOUT', `NBD request (command ${cmd}, ${length} bytes at ${offset}) got no reply within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.pending.set(cookie, { cmd, offset, length, buf, covered: 0, timer, resolve, reject, statuses: cmd === CMD.BLOCK_STATUS ? new Map() : undefined });
      this.socket.write(this.header(cmd, flags, cookie, offset, length));
      if (data) this.socket.write(data);
    });
  }

  /** Reads replies until the connection ends, dispatching each to its request by cookie. */
  private async receiveLoop(): Promise<void> {
    try {
      for (;;) {
        const magic = (await this.reader.read(4)).readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.onSimpleReply();
        else if (magic === STRUCTURED_REPLY_MAGIC) await this.onChunk();
        else throw this.violation(`bad reply magic 0x${magic.toString(16).padStart(8, '0')}`);
      }
    } catch (err) {
      this.fail(err instanceof NbdError ? err : new NbdError('CLOSED', `NBD connection to "${this.exportName}" failed: ${(err as Error).message}`));
    }
  }

  private async onSimpleReply(): Promise<void> {
    const rest = await this.reader.read(HEADER_REST);
    const errno = rest.readUInt32BE(0);
    const cookie = rest.readBigUInt64BE(4);
    const p = this.pending.get(cookie);
    if (!p) throw this.violation(`reply for unknown cookie ${cookie}`);
    if (errno !== 0) {
      return this.finish(cookie, p, new NbdError('COMMAND_FAILED', `NBD ${commandName(p.cmd)} of ${p.length} bytes at ${p.offset} failed: ${errnoName(errno)}`, errno));
    }
    if (p.cmd === CMD.READ) {
      if (this.structuredReplies) throw this.violation('simple reply to a read after structured replies were negotiated');
      await this.reader.readInto(p.buf!);
      return this.finish(cookie, p, null, p.buf!);
    }
    if (p.cmd === CMD.BLOCK_STATUS) throw this.violation('simple success reply to block status');
    this.finish(cookie, p, null, null);
  }

  private async onChunk(): Promise<void> {
    const head = await this.reader.read(CHUNK_REST);
    const flags = head.readUInt16BE(0);
    const type = head.readUInt16BE(2);
    const cookie = head.readBigUInt64BE(4);
    const length = head.readUInt32BE(12);
    if (!this.structuredReplies) throw this.violation('structured reply chunk without structured replies negotiated');
    const p = this.pending.get(cookie);
    if (!p) throw this.violation(`reply chunk for unknown cookie ${cookie}`);
    const limit = type === CHUNK.OFFSET_DATA ? 8 + p.length : MAX_CONTROL_CHUNK;
    if (length > limit) throw this.violation(`chunk type ${type} of ${length} bytes for a ${p.length}-byte request`);
    if (type === CHUNK.OFFSET_DATA) return this.onOffsetData(p, cookie, flags, length);
    const payload = length ? await this.reader.read(length) : Buffer.alloc(0);

    if (type === CHUNK.NONE) {
      if (length !== 0 || !(flags & REPLY_FLAG_DONE)) throw this.violation('NBD_REPLY_TYPE_NONE must be empty and final');
    } else if (type === CHUNK.OFFSET_HOLE) {
      if (payload.length < 12) throw this.violation('short OFFSET_HOLE chunk');
      const at = this.readChunkPlace(p, payload.readBigUInt64BE(0), payload.readUInt32BE(8));
      p.buf!.fill(0, at - p.offset, at - p.offset + payload.readUInt32BE(8));
    } else if (type === CHUNK.BLOCK_STATUS) {
      if (p.cmd !== CMD.BLOCK_STATUS) throw this.violation(`block status chunk in reply to ${commandName(p.cmd)}`);
      if (payload.length < 12 || (payload.length - 4) % 8 !== 0) throw this.violation(`block status chunk of ${payload.length} bytes`);
      const id = payload.readUInt32BE(0);
      if (!this.contextNames.has(id)) throw this.violation(`block status for context id ${id}, which was not negotiated`);
      const extents: StatusExtent[] = [];
      let at = p.offset;
      const end = p.offset + p.length;
      for (let i = 4; i < payload.length && at < end; i += 8) {
        const len = payload.readUInt32BE(i);
        if (len === 0) throw this.violation('block status extent of length 0');
        // The last extent may run past the request; keep what was asked.
        const clipped = Math.min(len, end - at);
        extents.push({ offset: at, length: clipped, flags: payload.readUInt32BE(i + 4) });
        at += clipped;
      }
      p.statuses!.set(id, extents);
    } else if (type & CHUNK_ERROR_BIT) {
      if (payload.length < 6) throw this.violation(`error chunk of ${payload.length} bytes`);
      const errno = payload.readUInt32BE(0);
      const msgLen = payload.readUInt16BE(4);
      if (errno === 0) throw this.violation('error chunk with errno 0');
      if (6 + msgLen > payload.length) throw this.violation('error chunk message overruns the chunk');
      const msg = payload.subarray(6, 6 + msgLen).toString('utf8');
      const where = type === CHUNK.ERROR_OFFSET && payload.length >= 6 + msgLen + 8 ? ` at offset ${payload.readBigUInt64BE(6 + msgLen)}` : '';
      p.error ??= new NbdError('COMMAND_FAILED', `NBD ${commandName(p.cmd)} of ${p.length} bytes at ${p.offset} failed: ${errnoName(errno)}${where}${msg ? ` (${msg})` : ''}`, errno);
    } else {
      throw this.violation(`unknown reply chunk type ${type}`);
    }

    this.afterChunk(p, cookie, flags);
  }

  /** NBD_REPLY_TYPE_OFFSET_DATA: the data goes straight from the socket into the caller's buffer. */
  private async onOffsetData(p: Pending, cookie: bigint, flags: number, length: number): Promise<void> {
    if (length < 9) throw this.violation('short OFFSET_DATA chunk');
    const at = this.readChunkPlace(p, (await this.reader.read(8)).readBigUInt64BE(0), length - 8);
    await this.reader.readInto(p.buf!.subarray(at - p.offset, at - p.offset + length - 8));
    this.afterChunk(p, cookie, flags);
  }

  /** Checks where a data or hole chunk of a read lands and counts it; returns its offset. */
  private readChunkPlace(p: Pending, offset: bigint, len: number): number {
    if (p.cmd !== CMD.READ) throw this.violation(`data chunk in reply to ${commandName(p.cmd)}`);
    const at = toSafeNumber(offset, 'chunk offset');
    if (at < p.offset || at + len > p.offset + p.length || len === 0) {
      throw this.violation(`read chunk [${at}, +${len}) outside the request [${p.offset}, +${p.length})`);
    }
    p.covered += len;
    if (p.covered > p.length) throw this.violation(`read chunks overlap: ${p.covered} bytes for a ${p.length}-byte request`);
    return at;
  }

  /** After each reply chunk: the last one (DONE) settles the request. */
  private afterChunk(p: Pending, cookie: bigint, flags: number): void {
    if (!(flags & REPLY_FLAG_DONE)) return;
    // A violation thrown here leaves the request pending, so fail() rejects it with the cause.
    if (p.error) return this.finish(cookie, p, p.error);
    if (p.cmd === CMD.READ) {
      if (p.covered !== p.length) throw this.violation(`read reply covered ${p.covered} of ${p.length} bytes`);
      return this.finish(cookie, p, null, p.buf!);
    }
    if (p.cmd === CMD.BLOCK_STATUS) {
      for (const [id, name] of this.contextNames) if (!p.statuses!.has(id)) throw this.violation(`block status reply lacks context "${name}"`);
      return this.finish(cookie, p, null, p.statuses!);
    }
    this.finish(cookie, p, null, null);
  }

  /** The request's last reply arrived: it leaves the table and its caller gets the outcome. */
  private finish(cookie: bigint, p: Pending, err: NbdError | null, value: Buffer | Map<number, StatusExtent[]> | null = null): void {
    this.pending.delete(cookie);
    this.settle(p, err, value);
  }

  private settle(p: Pending, err: NbdError | null, value: Buffer | Map<number, StatusExtent[]> | null = null): void {
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  private violation(what: string): NbdError {
    return new NbdError('PROTOCOL_VIOLATION', `NBD protocol violation by the server of "${this.exportName}": ${what}`);
  }

  /** The connection is unusable: fail every request in flight and drop the socket. */
  private fail(err: NbdError): void {
    if (!this.failure) this.failure = err;
    for (const [cookie, p] of this.pending) {
      this.pending.delete(cookie);
      this.settle(p, this.failure);
    }
    this.socket.destroy();
  }
}

function commandName(cmd: NbdCommand): string {
  return Object.entries(CMD).find(([, v]) => v === cmd)?.[0] ?? `command ${cmd}`;
}
