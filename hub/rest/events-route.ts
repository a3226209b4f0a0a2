import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { BusEvent, EventBus } from '../events/event-bus.js';
import type { Logger } from '../../shared/logger.js';
import { HubError } from '../errors.js';

const EventsQuery = z.strictObject({ flow_id: z.guid().optional(), execution_id: z.guid().optional(), job_id: z.guid().optional() });

/** A client that cannot keep up is dropped beyond this much unsent data; it reconnects and replays. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export interface EventStreamOptions {
  heartbeatMs: number;
  onClients: (n: number) => void;
}

/**
 * GET /api/v1/events: the lifecycle's changes as server-sent events, filtered by flow,
 * execution or job. `Last-Event-ID` (header, or `last_event_id` in the query for clients that
 * cannot set headers) replays what was missed; when that is impossible the first event is
 * `refetch`. Comments every heartbeatMs keep proxies from closing an idle stream. The same
 * bearer tokens as the rest of the API (viewer and up) apply.
 */
export function registerEventStream(app: FastifyInstance, bus: EventBus, log: Logger, opts: EventStreamOptions): void {
  // Streams never end by themselves; a closing server ends them, or it would wait for them forever.
  const open = new Set<ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });
  app.get('/api/v1/events', { config: { access: 'viewer' } }, async (req, reply) => {
    const raw = { ...(req.query as Record<string, unknown>) };
    const lastFromQuery = raw.last_event_id;
    delete raw.last_event_id;
    const q = EventsQuery.safeParse(raw);
    if (!q.success) {
      const issue = q.error.issues[0]!;
      const field = issue.code === 'unrecognized_keys' ? issue.keys[0] : issue.path.join('.');
      throw new HubError('INVALID_ARGUMENT', `query ${field}: ${issue.message}`, { field });
    }
    const f = q.data;
    const wanted = (b: BusEvent): boolean => {
      const e = b.event;
      if (e.type === 'refetch') return true;
      if (f.flow_id && e.flow_id !== f.flow_id) return false;
      if (f.execution_id && e.execution_id !== f.execution_id) return false;
      if (f.job_id && (!('job_id' in e) || e.job_id !== f.job_id)) return false;
      return true;
    };
    const lastId = (req.headers['last-event-id'] as string | undefined) ?? (typeof lastFromQuery === 'string' ? lastFromQuery : undefined);

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    const send = (b: BusEvent) => {
      if (!wanted(b)) return;
      res.write(`id: ${b.id}\nevent: ${b.event.type}\ndata: ${JSON.stringify(b.event)}\n\n`);
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        log.warn({ token: req.principal?.name }, 'event stream client too slow; dropped');
        res.destroy();
      }
    };
    // Subscribe before the replay is taken, so nothing falls between the two; duplicates by id are skipped.
    const queued: BusEvent[] = [];
    let live = false;
    const unsubscribe = bus.subscribe((b) => (live ? send(b) : queued.push(b)));
    opts.onClients(bus.clients);
    res.write(`retry: 2000\n: connected\n\n`);
    let seen = '';
    if (lastId !== undefined) {
      const replay = bus.replayAfter(lastId);
      if (replay.ok) for (const b of replay.events) send(b), (seen = b.id);
      else res.write(`event: refetch\ndata: ${JSON.stringify({ type: 'refetch', reason: replay.reason })}\n\n`);
    }
    const replayedUpTo = seen ? Number(seen.split('-')[1]) : -1;
    for (const b of queued) if (Number(b.id.split('-')[1]) > replayedUpTo) send(b);
    live = true;
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), opts.heartbeatMs);
    heartbeat.unref();
    const close = () => {
      clearInterval(heartbeat);
      unsubscribe();
      opts.onClients(bus.clients);
    };
    open.add(res);
    res.once('close', () => {
      open.delete(res);
      close();
    });
    req.raw.once('close', () => res.end());
  });
}
