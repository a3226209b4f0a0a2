import type { OnReadOpts, Socket } from 'node:net';

/** What one socket read takes when no payload is awaited (headers, replies, the handshake). */
const SCRATCH_BYTES = 64 * 1024;

/**
 * Exact-length reads from a stream socket. NBD is a length-prefixed binary protocol, so its
 * client asks for "the next n bytes" rather than handling arbitrary `data` events.
 * One read at a time: the NBD client has a single reader loop.
 *
 * The socket reads through `onread` (pass `reader.onread` to net.connect, then `attach`): while
 * a payload is awaited with readInto, each socket read goes straight into the rest of its
 * destination, so a block's bytes are written once, by the kernel. Measured in the bench's full
 * backup, the 'data' path (a fresh 64 KiB buffer per read, then a copy into the pipeline's shared
 * buffer) took 9 % of the agent's event loop in the copy alone, and its 16,384 buffers per GiB
 * fed the garbage collector. Anything else is read into one reused scratch buffer and copied out.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; into?: Buffer; filled: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);

  /** The socket's read options: net.connect({ ..., onread: reader.onread }). */
  readonly onread: OnReadOpts = {
    buffer: () => this.nextReadBuffer(),
    // true: never pause the socket; the NBD client's requests bound what is in flight.
    callback: (n: number, buf: Uint8Array) => {
      this.received(n, buf);
      return true;
    },
  };

  /** `endError` makes the error a read sees when the peer closes the socket. */
  constructor(private readonly endError: () => Error) {}

  /** Follows the socket's errors and its close; the socket must have been made with `onread`. */
  attach(socket: Socket): this {
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(this.endError()));
    return this;
  }

  /** Resolves with exactly n bytes, or rejects once the socket failed or closed. */
  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: concurrent read'));
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, filled: 0, resolve, reject };
    });
  }

  /**
   * Fills `dst` with the next dst.length bytes: what has arrived already is copied in, and the
   * socket reads the rest straight into it.
   */
  readInto(dst: Buffer): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: concurrent read'));
    if (this.buffered >= dst.length) return Promise.resolve(this.take(dst.length, dst));
    if (this.failure) return Promise.reject(this.failure);
    const filled = this.buffered;
    if (filled > 0) this.take(filled, dst);
    return new Promise((resolve, reject) => {
      this.waiter = { n: dst.length, into: dst, filled, resolve, reject };
    });
  }

  /** Bytes received but not yet read (for detecting trailing garbage in tests and errors). */
  get pending(): number {
    return this.buffered;
  }

  /** Where the socket's next read goes: the awaited payload's rest, never past it, or the scratch buffer. */
  private nextReadBuffer(): Uint8Array {
    const w = this.waiter;
    if (w?.into && this.buffered === 0) return w.into.subarray(w.filled);
    return this.scratch;
  }

  private received(n: number, buf: Uint8Array): void {
    if (n <= 0) return;
    const w = this.waiter;
    if (w?.into && buf.buffer === w.into.buffer && buf.byteOffset === w.into.byteOffset + w.filled) {
      w.filled += n;
      if (w.filled === w.n) {
        this.waiter = null;
        w.resolve(w.into);
      }
      return;
    }
    // The scratch buffer is the next read's too: keep a copy of what arrived.
    this.chunks.push(Buffer.from(Buffer.from(buf.buffer, buf.byteOffset, n)));
    this.buffered += n;
    this.pump();
  }

  private pump(): void {
    const w = this.waiter;
    if (!w) return;
    if (w.into) {
      // A payload whose start came in with an earlier read: copy what is here, read the rest direct.
      const k = Math.min(this.buffered, w.n - w.filled);
      if (k > 0) {
        this.take(k, w.into.subarray(w.filled));
        w.filled += k;
      }
      if (w.filled === w.n) {
        this.waiter = null;
        w.resolve(w.into);
      }
      return;
    }
    if (this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n));
    }
  }

  private fail(err: Error): void {
    // The first cause wins: a socket error is followed by 'close', which must not mask it.
    if (!this.failure) this.failure = err;
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.reject(this.failure);
    }
  }

  private take(n: number, into?: Buffer): Buffer {
    const first = this.chunks[0];
    if (!into && first && first.length >= n) {
      this.buffered -= n;
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = into ?? Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}
