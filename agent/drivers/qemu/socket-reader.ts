import type { Socket } from 'node:net';

/**
 * Exact-length reads from a stream socket. NBD is a length-prefixed binary protocol, so its
 * client asks for "the next n bytes" rather than handling arbitrary `data` events.
 * One read at a time: the NBD client has a single reader loop.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter: { n: number; into?: Buffer; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  /** `endError` makes the error a read sees when the peer closes the socket. */
  constructor(socket: Socket, private readonly endError: () => Error) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.pump();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(this.endError()));
  }

  /** Resolves with exactly n bytes, or rejects once the socket failed or closed. */
  read(n: number): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: concurrent read'));
    if (this.buffered >= n) return Promise.resolve(this.take(n));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
    });
  }

  /**
   * Fills `dst` with the next dst.length bytes, copied straight from the socket's buffers: a
   * read's payload (megabytes) is copied once, with no buffer of its own in between.
   */
  readInto(dst: Buffer): Promise<Buffer> {
    if (this.waiter) return Promise.reject(new Error('SocketReader: concurrent read'));
    if (this.buffered >= dst.length) return Promise.resolve(this.take(dst.length, dst));
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { n: dst.length, into: dst, resolve, reject };
    });
  }

  /** Bytes received but not yet read (for detecting trailing garbage in tests and errors). */
  get pending(): number {
    return this.buffered;
  }

  private pump(): void {
    const w = this.waiter;
    if (w && this.buffered >= w.n) {
      this.waiter = null;
      w.resolve(this.take(w.n, w.into));
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
