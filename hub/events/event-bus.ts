import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Logger } from '../../shared/logger.js';
import { EVENTS_CHANNEL, type LifecycleEvent, type RefetchNotice } from './lifecycle-event.js';

export interface BusEvent {
  /** `<boot>-<n>`: n rises by one per event on this hub; boot names this run of the hub. */
  id: string;
  event: LifecycleEvent | RefetchNotice;
}

export type Replay = { ok: true; events: BusEvent[] } | { ok: false; reason: string };

export interface EventBusOptions {
  databaseUrl: string;
  /** Events kept for clients that reconnect with Last-Event-ID. */
  bufferSize: number;
  /** At most one progress event per job per this interval; status and phase changes always pass. */
  progressIntervalMs: number;
}

/**
 * The hub's end of the live events: one LISTEN connection to PostgreSQL, on which every hub's
 * transactions NOTIFY their changes, a numbered ring buffer for replays, and the subscribers
 * (SSE clients). Ids are this hub's own: a client that reconnects to another hub, or to this one
 * after a restart, or from too long ago, is told to refetch instead of being given a gap.
 */
export class EventBus {
  private readonly boot = randomBytes(4).toString('hex');
  private seq = 0;
  private readonly buffer: BusEvent[] = [];
  private readonly subscribers = new Set<(e: BusEvent) => void>();
  private readonly lastProgress = new Map<string, number>();
  private client: pg.Client | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: EventBusOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.client?.end().catch(() => undefined);
    this.client = null;
  }

  get clients(): number {
    return this.subscribers.size;
  }

  subscribe(fn: (e: BusEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** The events after `lastId`, or why they cannot be given. */
  replayAfter(lastId: string): Replay {
    const m = /^([0-9a-f]{8})-(\d+)$/.exec(lastId);
    if (!m || m[1] !== this.boot) return { ok: false, reason: 'the event id is not from this run of this hub' };
    const after = Number(m[2]);
    if (after > this.seq) return { ok: false, reason: 'the event id is in the future' };
    const oldest = this.buffer.length > 0 ? this.seq - this.buffer.length + 1 : this.seq + 1;
    if (after + 1 < oldest) return { ok: false, reason: `events after ${lastId} are no longer buffered` };
    return { ok: true, events: this.buffer.slice(after + 1 - oldest) };
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.opts.databaseUrl });
    client.on('notification', (n) => this.receive(n.payload));
    client.on('error', (err) => {
      this.log.warn({ err }, 'event listener connection lost; reconnecting');
      this.reconnect(client);
    });
    client.on('end', () => this.reconnect(client));
    await client.connect();
    await client.query(`listen ${EVENTS_CHANNEL}`);
    this.client = client;
  }

  private reconnect(dead: pg.Client): void {
    if (this.stopped || this.client !== dead || this.retry) return;
    this.client = null;
    dead.end().catch(() => undefined);
    // Events committed while disconnected are lost to this hub; its clients are told to refetch.
    this.publish({ type: 'refetch', reason: 'the hub lost its connection to the database; events may be missing' }, true);
    const again = () => {
      this.retry = null;
      if (this.stopped) return;
      this.connect().catch((err: unknown) => {
        this.log.warn({ err }, 'event listener cannot reconnect yet');
        this.retry = setTimeout(again, 1_000);
        this.retry.unref();
      });
    };
    this.retry = setTimeout(again, 500);
    this.retry.unref();
  }

  private receive(payload: string | undefined): void {
    let event: LifecycleEvent;
    try {
      event = JSON.parse(payload ?? '') as LifecycleEvent;
    } catch (err) {
      this.log.error({ err, payload }, 'undecodable lifecycle event');
      return;
    }
    if (event.type === 'job.progress') {
      const now = Date.now();
      if (now - (this.lastProgress.get(event.job_id) ?? 0) < this.opts.progressIntervalMs) return;
      this.lastProgress.set(event.job_id, now);
    } else if (event.type === 'job.status' && ['succeeded', 'failed', 'cancelled'].includes(event.status)) {
      this.lastProgress.delete(event.job_id);
    }
    this.publish(event, false);
  }

  private publish(event: LifecycleEvent | RefetchNotice, gap: boolean): void {
    const e: BusEvent = { id: `${this.boot}-${++this.seq}`, event };
    if (gap) {
      // A gap cannot be replayed across: empty the buffer, so a reconnect is told to refetch.
      this.buffer.length = 0;
    } else {
      this.buffer.push(e);
      if (this.buffer.length > this.opts.bufferSize) this.buffer.shift();
    }
    for (const fn of this.subscribers) fn(e);
  }
}
