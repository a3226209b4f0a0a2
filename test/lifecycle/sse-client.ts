/** One server-sent event as a client receives it. */
export interface SseEvent {
  id: string | null;
  event: string;
  data: any;
}

/**
 * A minimal EventSource for tests: GET with a bearer token (and Last-Event-ID), parsing frames
 * as they arrive. Node 20 has no EventSource; this reads the stream with fetch.
 */
export class SseClient {
  readonly events: SseEvent[] = [];
  comments = 0;
  status = 0;
  private readonly abort = new AbortController();
  readonly done: Promise<void>;
  private waiters: { pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }[] = [];

  constructor(url: string, token: string, lastEventId?: string) {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'text/event-stream' };
    if (lastEventId) headers['last-event-id'] = lastEventId;
    this.done = fetch(url, { headers, signal: this.abort.signal })
      .then(async (res) => {
        this.status = res.status;
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            this.frame(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      })
      .catch((err: unknown) => {
        if ((err as Error).name !== 'AbortError') throw err;
      });
  }

  private frame(text: string): void {
    let id: string | null = null;
    let event = 'message';
    const data: string[] = [];
    let fields = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith(':')) {
        this.comments++;
        continue;
      }
      const [k, ...rest] = line.split(':');
      const v = rest.join(':').replace(/^ /, '');
      if (k === 'id') id = v;
      else if (k === 'event') event = v;
      else if (k === 'data') data.push(v);
      else continue;
      fields++;
    }
    if (fields === 0 || data.length === 0) return;
    const e = { id, event, data: JSON.parse(data.join('\n')) };
    this.events.push(e);
    this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
  }

  waitFor(pred: (e: SseEvent) => boolean, timeoutMs = 30_000): Promise<SseEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching event within ${timeoutMs} ms; got ${this.events.map((e) => e.event).join(', ')}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(t), resolve(e)) });
    });
  }

  get lastId(): string | undefined {
    return this.events.filter((e) => e.id).at(-1)?.id ?? undefined;
  }

  close(): Promise<void> {
    this.abort.abort();
    return this.done;
  }
}
