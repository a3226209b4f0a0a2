import type { Socket } from 'node:net';
import { NbdError } from './nbd-error.js';
import {
  DEFAULT_MAX_PAYLOAD,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  IHAVEOPT,
  INFO,
  NBDMAGIC,
  OPT,
  OPTION_REPLY_MAGIC,
  REP,
  REP_ERR_BIT,
  REP_ERR_NAMES,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
} from './nbd-protocol.js';
import type { SocketReader } from './socket-reader.js';

/** The server's block size constraints (NBD_INFO_BLOCK_SIZE), or the protocol defaults. */
export interface BlockSizeConstraints {
  minimum: number;
  preferred: number;
  /** Largest payload of one READ or WRITE. */
  maximum: number;
}

/** What the negotiation phase settled. */
export interface NegotiatedExport {
  size: number;
  transmissionFlags: number;
  structuredReplies: boolean;
  /** Granted metadata contexts by name, with the id the server tags their block status with. */
  metaContexts: Map<string, number>;
  blockSize: BlockSizeConstraints;
}

/** Option replies carry names and messages; anything bigger is garbage, not a reply. */
const MAX_OPTION_REPLY = 1 << 20;
/** The magic an oldstyle server sends where newstyle sends IHAVEOPT. */
const OLDSTYLE_MAGIC = 0x00420281861253n;

/**
 * Fixed newstyle negotiation: structured replies, metadata contexts, then NBD_OPT_GO with a
 * request for the block size constraints. Throws NbdError; the caller drops the socket.
 */
export async function negotiate(
  socket: Socket,
  reader: SocketReader,
  exportName: string,
  metaContexts: readonly string[],
): Promise<NegotiatedExport> {
  const hello = await reader.read(18);
  if (hello.readBigUInt64BE(0) !== NBDMAGIC) {
    throw new NbdError('HANDSHAKE_FAILED', `not an NBD server: greeting starts with 0x${hello.subarray(0, 8).toString('hex')}`);
  }
  const second = hello.readBigUInt64BE(8);
  if (second === OLDSTYLE_MAGIC) throw new NbdError('HANDSHAKE_FAILED', 'the server speaks oldstyle NBD; fixed newstyle is required');
  if (second !== IHAVEOPT) throw new NbdError('PROTOCOL_VIOLATION', `bad newstyle magic 0x${second.toString(16)}`);
  const serverFlags = hello.readUInt16BE(16);
  if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new NbdError('HANDSHAKE_FAILED', 'the server does not offer fixed newstyle negotiation');
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
  socket.write(clientFlags);

  const opts = new OptionChannel(socket, reader);

  // Structured replies: needed for holes in reads, error messages and block status.
  let structuredReplies = true;
  {
    const r = await opts.request(OPT.STRUCTURED_REPLY, Buffer.alloc(0));
    if (r.type === REP_ERR_UNSUP) structuredReplies = false;
    else if (r.type !== REP.ACK) throw opts.refusal('NBD_OPT_STRUCTURED_REPLY', r);
  }

  const name = Buffer.from(exportName, 'utf8');
  const granted = new Map<string, number>();
  if (metaContexts.length > 0) {
    if (!structuredReplies) {
      throw new NbdError('META_CONTEXT_REFUSED', 'the server refused structured replies, which metadata contexts need');
    }
    const queries = metaContexts.map((q) => Buffer.from(q, 'utf8'));
    const data = Buffer.alloc(4 + name.length + 4 + queries.reduce((n, q) => n + 4 + q.length, 0));
    let at = data.writeUInt32BE(name.length, 0);
    at += name.copy(data, at);
    at = data.writeUInt32BE(queries.length, at);
    for (const q of queries) {
      at = data.writeUInt32BE(q.length, at);
      at += q.copy(data, at);
    }
    for (let r = await opts.request(OPT.SET_META_CONTEXT, data); ; r = await opts.next(OPT.SET_META_CONTEXT)) {
      if (r.type === REP.ACK) break;
      if (r.type !== REP.META_CONTEXT) throw opts.refusal('NBD_OPT_SET_META_CONTEXT', r);
      if (r.data.length < 4) throw new NbdError('PROTOCOL_VIOLATION', 'NBD_REP_META_CONTEXT shorter than its id');
      granted.set(r.data.subarray(4).toString('utf8'), r.data.readUInt32BE(0));
    }
    const missing = metaContexts.filter((q) => !granted.has(q));
    if (missing.length > 0) {
      throw new NbdError(
        'META_CONTEXT_REFUSED',
        `export "${exportName}" does not offer metadata context(s) ${missing.join(', ')} (granted: ${[...granted.keys()].join(', ') || 'none'})`,
      );
    }
  }

  const go = Buffer.alloc(4 + name.length + 2 + 2);
  let at = go.writeUInt32BE(name.length, 0);
  at += name.copy(go, at);
  at = go.writeUInt16BE(1, at);
  go.writeUInt16BE(INFO.BLOCK_SIZE, at);
  let size: number | null = null;
  let transmissionFlags = 0;
  let blockSize: BlockSizeConstraints = { minimum: 1, preferred: 4096, maximum: DEFAULT_MAX_PAYLOAD };
  for (let r = await opts.request(OPT.GO, go); ; r = await opts.next(OPT.GO)) {
    if (r.type === REP.ACK) break;
    if (r.type === REP.INFO) {
      if (r.data.length < 2) throw new NbdError('PROTOCOL_VIOLATION', 'NBD_REP_INFO without an info type');
      const info = r.data.readUInt16BE(0);
      if (info === INFO.EXPORT) {
        if (r.data.length !== 12) throw new NbdError('PROTOCOL_VIOLATION', `NBD_INFO_EXPORT of ${r.data.length} bytes, expected 12`);
        size = toSafeNumber(r.data.readBigUInt64BE(2), 'export size');
        transmissionFlags = r.data.readUInt16BE(10);
      } else if (info === INFO.BLOCK_SIZE) {
        if (r.data.length !== 14) throw new NbdError('PROTOCOL_VIOLATION', `NBD_INFO_BLOCK_SIZE of ${r.data.length} bytes, expected 14`);
        blockSize = { minimum: r.data.readUInt32BE(2), preferred: r.data.readUInt32BE(6), maximum: r.data.readUInt32BE(10) };
        if (blockSize.minimum < 1 || blockSize.maximum < blockSize.minimum) {
          throw new NbdError('PROTOCOL_VIOLATION', `nonsensical block sizes ${JSON.stringify(blockSize)}`);
        }
      }
      // Other info types (name, description) are optional extras we did not ask for.
      continue;
    }
    if (r.type === REP_ERR_UNKNOWN) {
      throw new NbdError('EXPORT_NOT_FOUND', `the server has no export "${exportName}"${r.data.length ? `: ${r.data.toString('utf8')}` : ''}`);
    }
    if (r.type === REP_ERR_UNSUP) throw new NbdError('HANDSHAKE_FAILED', 'the server does not support NBD_OPT_GO');
    throw opts.refusal('NBD_OPT_GO', r);
  }
  if (size === null) throw new NbdError('PROTOCOL_VIOLATION', 'NBD_OPT_GO acknowledged without NBD_INFO_EXPORT');
  return { size, transmissionFlags, structuredReplies, metaContexts: granted, blockSize };
}

interface OptionReply {
  type: number;
  data: Buffer;
}

/** Sends options and reads their replies, checking the reply magic and option echo. */
class OptionChannel {
  constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
  ) {}

  request(option: number, data: Buffer): Promise<OptionReply> {
    const head = Buffer.alloc(16);
    head.writeBigUInt64BE(IHAVEOPT, 0);
    head.writeUInt32BE(option, 8);
    head.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([head, data]));
    return this.next(option);
  }

  async next(option: number): Promise<OptionReply> {
    const head = await this.reader.read(20);
    const magic = head.readBigUInt64BE(0);
    if (magic !== OPTION_REPLY_MAGIC) throw new NbdError('PROTOCOL_VIOLATION', `bad option reply magic 0x${magic.toString(16)}`);
    const echoed = head.readUInt32BE(8);
    if (echoed !== option) throw new NbdError('PROTOCOL_VIOLATION', `reply for option ${echoed} while option ${option} was pending`);
    const type = head.readUInt32BE(12);
    const len = head.readUInt32BE(16);
    if (len > MAX_OPTION_REPLY) throw new NbdError('PROTOCOL_VIOLATION', `option reply of ${len} bytes`);
    return { type, data: len ? await this.reader.read(len) : Buffer.alloc(0) };
  }

  refusal(option: string, r: OptionReply): NbdError {
    if (r.type & REP_ERR_BIT) {
      const name = REP_ERR_NAMES[r.type] ?? `error 0x${r.type.toString(16)}`;
      return new NbdError('OPTION_REFUSED', `${option} refused with ${name}${r.data.length ? `: ${r.data.toString('utf8')}` : ''}`);
    }
    return new NbdError('PROTOCOL_VIOLATION', `unexpected reply type ${r.type} to ${option}`);
  }
}

export function toSafeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new NbdError('PROTOCOL_VIOLATION', `${what} ${v} exceeds 2^53`);
  return Number(v);
}
