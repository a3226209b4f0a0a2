import { createConnection, type Socket } from 'node:net';

/**
 * Why a QMP exchange failed; `code` is stable.
 * - CONNECT_FAILED: the monitor socket could not be opened.
 * - HANDSHAKE_FAILED: no greeting, or `qmp_capabilities` was refused, within the timeout.
 *   QEMU serves one client per monitor: a second client waits until the first one leaves.
 * - COMMAND_FAILED: QEMU answered with an error (see QmpCommandError).
 * - TIMEOUT: no answer in time. The command may still run in QEMU.
 * - CLOSED: the connection closed before the answer came.
 * - PROTOCOL_VIOLATION: QEMU sent something that is not QMP.
 */
export type QmpErrorCode = 'CONNECT_FAILED' | 'HANDSHAKE_FAILED' | 'COMMAND_FAILED' | 'TIMEOUT' | 'CLOSED' | 'PROTOCOL_VIOLATION';

export class QmpError extends Error {
  constructor(
    readonly code: QmpErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'QmpError';
  }
}

/** QEMU refused a command: `errorClass` (e.g. GenericError, DeviceNotActive) and `desc` are QMP's own. */
export class QmpCommandError extends QmpError {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super('COMMAND_FAILED', `QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpCommandError';
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpConnectOptions {
  /** Limit for the connection and greeting (default 10 s) and default per-command limit (default 30 s). */
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
}

interface Pending {
  command: string;
  timer: NodeJS.Timeout;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

type QmpMessage =
  | { QMP: QmpGreeting }
  | { return: unknown; id?: unknown }
  | { error: { class: string; desc: string }; id?: unknown }
  | QmpEvent;

/**
 * A QMP client on a unix socket: greeting, capabilities negotiation, commands matched to
 * answers by id, QMP errors as QmpCommandError, and asynchronous events for listeners.
 */
export class QmpClient {
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private nextId = 1;
  private failure: QmpError | null = null;
  private closed: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    readonly greeting: QmpGreeting,
    private readonly commandTimeoutMs: number,
    private readonly where: string,
    lines: LineSplitter,
  ) {
    lines.onMessage = (m) => this.dispatch(m);
    lines.onFailure = (e) => this.fail(e);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    const socket = createConnection({ path });
    const lines = new LineSplitter(socket, path);
    const timer = setTimeout(
      () => socket.destroy(new QmpError('HANDSHAKE_FAILED', `no QMP greeting from ${path} within ${connectTimeoutMs} ms (is another client holding this monitor?)`)),
      connectTimeoutMs,
    );
    try {
      const greeting = await new Promise<QmpGreeting>((resolve, reject) => {
        // Socket errors reach `reject` through the splitter's onFailure.
        lines.onMessage = (m) => {
          if ('QMP' in m) resolve(m.QMP);
          else reject(new QmpError('PROTOCOL_VIOLATION', `expected a QMP greeting from ${path}, got ${JSON.stringify(m).slice(0, 200)}`));
        };
        lines.onFailure = reject;
      });
      const client = new QmpClient(socket, greeting, opts.commandTimeoutMs ?? 30_000, path, lines);
      await client.execute('qmp_capabilities').catch((err: Error) => {
        throw new QmpError('HANDSHAKE_FAILED', `qmp_capabilities on ${path}: ${err.message}`);
      });
      return client;
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs a command and resolves with its `return` value; QEMU's refusal rejects with QmpCommandError. */
  execute<T = unknown>(command: string, args?: object, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late answer to this id is dropped in dispatch(): the caller has moved on.
        this.pending.delete(id);
        reject(new QmpError('TIMEOUT', `QMP ${command} got no answer from ${this.where} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, timer, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id }) + '\n');
    });
  }

  /** Calls `listener` with every event from now on; returns the unsubscribe function. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first event named `name` (and matching `match`) from now on. */
  waitForEvent(name: string, match: (e: QmpEvent) => boolean = () => true, timeoutMs = this.commandTimeoutMs): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const off = this.onEvent((e) => {
        if (e.event === name && match(e)) {
          off();
          clearTimeout(timer);
          resolve(e);
        }
      });
      const timer = setTimeout(() => {
        off();
        reject(new QmpError('TIMEOUT', `no QMP event ${name} from ${this.where} within ${timeoutMs} ms`));
      }, timeoutMs);
    });
  }

  get isClosed(): boolean {
    return this.failure !== null;
  }

  /** Closes the connection; commands still waiting fail with CLOSED. Safe to call more than once. */
  async close(): Promise<void> {
    this.fail(new QmpError('CLOSED', `QMP connection to ${this.where} was closed`));
    await this.closed;
  }

  private dispatch(m: QmpMessage): void {
    if ('event' in m) {
      for (const l of [...this.listeners]) l(m);
      return;
    }
    if ('QMP' in m) return this.fail(new QmpError('PROTOCOL_VIOLATION', `second QMP greeting from ${this.where}`));
    const id = typeof m.id === 'number' ? m.id : -1;
    const p = this.pending.get(id);
    if (!p) return; // the answer to a command that timed out
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in m) p.reject(new QmpCommandError(p.command, m.error.class, m.error.desc));
    else p.resolve(m.return);
  }

  private fail(err: QmpError): void {
    if (!this.failure) this.failure = err;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(this.failure);
    }
    this.listeners.clear();
    this.socket.destroy();
  }
}

/** Splits the socket's text into QMP's newline-terminated JSON messages. */
class LineSplitter {
  onMessage: (m: QmpMessage) => void = () => {};
  onFailure: (e: QmpError) => void = () => {};
  private buf = '';

  constructor(socket: Socket, where: string) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buf += chunk;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (!line) continue;
        let m: QmpMessage;
        try {
          m = JSON.parse(line) as QmpMessage;
        } catch {
          this.onFailure(new QmpError('PROTOCOL_VIOLATION', `non-JSON line from ${where}: ${line.slice(0, 200)}`));
          return;
        }
        this.onMessage(m);
      }
    });
    let connected = false;
    socket.once('connect', () => (connected = true));
    socket.on('error', (err) => {
      if (err instanceof QmpError) return this.onFailure(err);
      this.onFailure(
        connected
          ? new QmpError('CLOSED', `QMP connection to ${where} failed: ${err.message}`)
          : new QmpError('CONNECT_FAILED', `cannot connect to QMP socket ${where}: ${err.message}`),
      );
    });
    socket.on('close', () => this.onFailure(new QmpError('CLOSED', `QMP connection to ${where} closed`)));
  }
}
