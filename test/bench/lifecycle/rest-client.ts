export interface TimedAnswer<T = any> {
  status: number;
  body: T;
  /** From the request's start until its body was read, ms. */
  ms: number;
  /** performance.now() when the body was read. */
  at: number;
}

/** A JSON client for a REST server, timing every request (fetch keeps its connections alive). */
export class RestClient {
  constructor(
    readonly base: string,
    readonly token = '',
  ) {}

  async call<T = any>(method: string, path: string, body?: unknown): Promise<TimedAnswer<T>> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const t0 = performance.now();
    const res = await fetch(this.base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const at = performance.now();
    return { status: res.status, body: text ? (JSON.parse(text) as T) : (null as T), ms: at - t0, at };
  }

  /** As call, but anything other than `status` is an error naming the answer. */
  async expect<T = any>(status: number, method: string, path: string, body?: unknown): Promise<TimedAnswer<T>> {
    const r = await this.call<T>(method, path, body);
    if (r.status !== status) throw new Error(`${method} ${path}: expected ${status}, got ${r.status}: ${JSON.stringify(r.body).slice(0, 500)}`);
    return r;
  }
}
