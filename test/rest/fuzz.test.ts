import { randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken, revokeApiToken } from '../../hub/auth/api-tokens.js';
import type { RouteSpec } from '../../hub/rest/route.js';
import { REST_ROUTES } from '../../hub/rest/server.js';
import { api, insertAgent, insertBackup, insertFlow, insertJob, insertTarget, startRestHub, type RestHub } from './rest-support.js';

/*
 * Malformed requests of every kind, on every route: each must get a 4xx with a JSON error body,
 * never a 5xx, never a dropped connection. FUZZ_SEED reproduces a run; FUZZ_COUNT scales it.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_b4c4);
const COUNT = Number(process.env.FUZZ_COUNT ?? 2400);
const RAW_COUNT = 120;
const BODY_LIMIT = 64 * 1024;

let h: RestHub;
let revoked: string;
const ids = {} as { agent: string; target: string; flow: string; job: string; backup: string };

beforeAll(async () => {
  h = await startRestHub({ env: { BACKHAUL_HUB_API_BODY_LIMIT_BYTES: String(BODY_LIMIT) } });
  ids.agent = await insertAgent(h.db.url);
  const t = await insertTarget(h.db.url, ids.agent);
  ids.target = t.id;
  ids.flow = await insertFlow(h.db.url, { targetIds: [t.id] });
  ids.job = await insertJob(h.db.url, { agentId: ids.agent, targetRef: t.ref, status: 'succeeded', progress: { bytesTotal: 1, bytesDone: 1 } });
  ids.backup = await insertBackup(h.db.url, { jobId: ids.job, agentId: ids.agent, targetRef: t.ref });
  const r = await createApiToken(h.hub.orm.em.fork(), 'revoked', 'admin');
  await revokeApiToken(h.hub.orm.em.fork(), r.id);
  revoked = r.token;
});

afterAll(async () => {
  await h?.close();
});

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const str = (len: number, alphabet = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~%/é😀\u0000 "\'\\{}[]') =>
    Array.from({ length: len }, () => pick([...alphabet])).join('');
  return { next, int, pick, str, chance: (p: number) => next() < p };
}
type Rng = ReturnType<typeof prng>;

/** A valid body per body route: the starting point of the mutations. */
function validBody(url: string): Record<string, unknown> {
  switch (url) {
    case '/api/v1/targets':
      return { agent_id: ids.agent, ref: `vm-${randomUUID()}`, name: 'vm', driver: 'qemu', disks: [{ name: 'vda', path: '/vm/vda', size_bytes: 10 }] };
    case '/api/v1/flows':
      return { name: `f-${randomUUID()}`, target_ids: [ids.target], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keep_last: 2 } };
    case '/api/v1/flows/:id':
      return { name: `f-${randomUUID()}`, enabled: false };
    case '/api/v1/backups/:id/restore':
      return { disks: [{ disk_name: 'vda', path: '/restore/vda', format: 'raw', create: true }] };
    default:
      throw new Error(`no valid body for ${url}`);
  }
}

function junkValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 2 ? 7 : 9)) {
    case 0:
      return rng.int(2) ? -rng.int(1e6) : rng.next() * 1e308;
    case 1:
      return rng.str(rng.int(40));
    case 2:
      return rng.chance(0.5);
    case 3:
      return null;
    case 4:
      return 'x'.repeat(rng.int(5000));
    case 5:
      return randomUUID();
    case 6:
      return rng.pick(['', ' ', 'null', '0x10', '1e999', '../../etc/passwd', 'NaN', '-0', '{}', '[]', 'Robert\'); drop table flows;--']);
    case 7:
      return Array.from({ length: rng.int(4) }, () => junkValue(rng, depth + 1));
    default:
      return Object.fromEntries(Array.from({ length: rng.int(4) }, () => [rng.str(rng.int(8) + 1), junkValue(rng, depth + 1)]));
  }
}

/** A body the route's own schema rejects: a field replaced, removed or added, deep or at the top. */
function invalidBody(rng: Rng, r: RouteSpec): unknown {
  for (;;) {
    const body: Record<string, unknown> = validBody(r.url);
    const keys = Object.keys(body);
    const key = rng.pick(keys);
    const candidate = ((): unknown => {
      switch (rng.int(6)) {
        case 0:
          return { ...body, [key]: junkValue(rng) };
        case 1: {
          const { [key]: _gone, ...rest } = body;
          return rest;
        }
        case 2:
          return { ...body, [rng.str(6)]: junkValue(rng) };
        case 3: {
          const inner = body[key];
          if (Array.isArray(inner) && typeof inner[0] === 'object') return { ...body, [key]: [{ ...inner[0], [rng.pick(Object.keys(inner[0]))]: junkValue(rng) }] };
          return { ...body, [key]: junkValue(rng) };
        }
        case 4:
          return junkValue(rng);
        default:
          return rng.pick([[], [body], 'text', 42, null, true]);
      }
    })();
    if (!r.body!.safeParse(candidate).success) return candidate;
  }
}

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  why: string;
}

const BAD_JSON = ['{', '{"name": }', '{name: 1}', "{'a': 1}", '[1, 2', '{"a": 1}}', 'nul', '"unterminated', '{"a": NaN}', '\u0000', '{"a":1,}', '\ufeff{"a":1}x'];
const BAD_METHODS = ['PUT', 'OPTIONS', 'TRACE', 'PROPFIND', 'SEARCH', 'LOCK', 'MKCOL', 'COPY', 'REPORT', 'PURGE', 'LINK', 'UNLINK', 'FOO', 'BREW'];

function idFor(rng: Rng, kind: 'unknown' | 'malformed'): string {
  if (kind === 'unknown') return randomUUID();
  return rng.pick([
    '1',
    'null',
    randomUUID().slice(0, 35),
    `${randomUUID()}x`,
    randomUUID().replace(/-/g, ''),
    encodeURIComponent(rng.str(rng.int(30) + 1)),
    '%E0%A4%A',
    '%00',
    '..',
    'a'.repeat(rng.int(400) + 1),
    `${randomUUID()}%20`,
    '{id}',
  ]);
}

const fillPath = (url: string, id: string) => url.replace(':id', id);

/** One malformed request; `why` says which defect it carries. */
function malformed(rng: Rng): Req {
  const routes = REST_ROUTES.filter((r) => r.access !== 'public');
  const r = rng.pick(routes);
  const auth = { authorization: `Bearer ${rng.pick([h.tokens.viewer, h.tokens.operator, h.tokens.admin])}` };
  const path = () => fillPath(r.url, rng.pick([ids.flow, ids.backup, ids.job, ids.target, ids.agent, randomUUID()]));
  const json = { 'content-type': 'application/json' };
  const writable = routes.filter((x) => x.method === 'POST' || x.method === 'PATCH');
  const withBody = routes.filter((x) => x.body);
  const withId = routes.filter((x) => x.params);
  switch (rng.int(10)) {
    case 0: {
      const token = rng.pick(['', 'Bearer', 'Bearer ', `Bearer ${revoked}`, `Bearer bh_${rng.str(43, 'abcdefABCDEF0123456789-_')}`, `Basic ${Buffer.from('a:b').toString('base64')}`, `Bearer ${h.tokens.admin}x`, `bearer  ${rng.str(10, 'abc!#$%&*+-.^_`|~019')}`, `Token ${h.tokens.admin}`]);
      const method = rng.chance(0.1) ? 'HEAD' : r.method;
      const headers: Record<string, string> = token ? { authorization: token } : {};
      return { method: method === 'HEAD' && r.method !== 'GET' ? r.method : method, path: path(), headers, why: `bad token "${token.slice(0, 20)}"` };
    }
    case 1: {
      const w = rng.pick(writable);
      return { method: w.method, path: fillPath(w.url, rng.pick([ids.flow, ids.backup, randomUUID()])), headers: { ...auth, ...json }, body: rng.pick(BAD_JSON), why: 'broken JSON' };
    }
    case 2: {
      const w = rng.pick(withBody);
      const id = w.url === '/api/v1/backups/:id/restore' ? ids.backup : ids.flow;
      return { method: w.method, path: fillPath(w.url, id), headers: { ...auth, ...json }, body: JSON.stringify(invalidBody(rng, w)), why: 'body the schema rejects' };
    }
    case 3: {
      const w = rng.pick(writable);
      const size = BODY_LIMIT + 1 + rng.int(4 * BODY_LIMIT);
      const body = rng.chance(0.5) ? JSON.stringify({ name: 'x'.repeat(size) }) : Buffer.alloc(size, rng.pick(['{', 'a', ' ']));
      return { method: w.method, path: fillPath(w.url, ids.flow), headers: { ...auth, ...json }, body, why: `body of ${size} bytes` };
    }
    case 4: {
      const w = rng.pick(withId);
      if (w.body) return { method: w.method, path: fillPath(w.url, randomUUID()), headers: { ...auth, ...json }, body: JSON.stringify(validBody(w.url)), why: 'unknown id, valid body' };
      return { method: w.method, path: fillPath(w.url, randomUUID()), headers: auth, why: 'unknown id' };
    }
    case 5: {
      const w = rng.pick(withId);
      return { method: w.method, path: fillPath(w.url, idFor(rng, 'malformed')), headers: auth, why: 'malformed id' };
    }
    case 6: {
      const segments = Array.from({ length: rng.int(5) + 1 }, () => rng.pick(['api', 'v1', 'v2', 'flows', 'jobs', '..', '.', '', '%2e%2e', encodeURIComponent(rng.str(8)), randomUUID(), 'openapi.yaml']));
      const p = rng.pick(['/', '/api/', '/api/v1/', '//', '/healthz/']) + segments.join('/');
      const known = REST_ROUTES.some((x) => new RegExp(`^${x.url.replace(':id', '[^/]+')}$`).test(p));
      return known ? { method: 'GET', path: '/api/v1/unknown', headers: auth, why: 'unknown route' } : { method: rng.pick(['GET', 'POST', 'DELETE']), path: p, headers: auth, why: 'random path' };
    }
    case 7:
      return { method: rng.pick(BAD_METHODS), path: path(), headers: auth, why: 'method the route lacks' };
    case 8: {
      const w = rng.pick(writable);
      const type = rng.pick(['text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', 'image/png', 'application/jsonx']);
      return { method: w.method, path: fillPath(w.url, ids.flow), headers: { ...auth, 'content-type': type }, body: 'name=x', why: `content type ${type}` };
    }
    default: {
      const list = rng.pick(['/api/v1/executions', '/api/v1/backups', '/api/v1/targets', '/api/v1/jobs/:id/log']);
      const q = rng.pick(['limit=0', 'limit=-5', 'limit=abc', 'limit=1e9', 'offset=-1', 'offset=x', 'status=done', 'flow_id=42', 'target_id=x', 'agent_id=%27', `limit=${'9'.repeat(40)}`, 'limit=1&limit=2', 'status[]=running']);
      const p = list === '/api/v1/jobs/:id/log' ? fillPath(list, ids.job) : list;
      const qq = list === '/api/v1/jobs/:id/log' ? rng.pick(['limit=0', 'limit=x', 'limit=100000']) : q;
      return { method: 'GET', path: `${p}?${qq}`, headers: auth, why: 'bad query' };
    }
  }
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
}

function send(agent: http.Agent, req: Req): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...req.headers };
    if (req.body !== undefined) headers['content-length'] = Buffer.byteLength(req.body);
    const r = http.request({ host: '127.0.0.1', port: h.hub.httpPort, method: req.method, path: req.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(req.body);
  });
}

/** What is wrong with an answer to a malformed request, or null when it is as it should be. */
function judge(method: string, a: Answer): string | null {
  if (a.status < 400 || a.status >= 500) return `status ${a.status}`;
  if (method === 'HEAD') return null;
  if (!a.contentType.startsWith('application/json')) return `content type "${a.contentType}"`;
  try {
    const b = JSON.parse(a.body) as { code?: unknown; message?: unknown };
    if (typeof b.code !== 'string' || typeof b.message !== 'string') return `body without code and message: ${a.body.slice(0, 200)}`;
  } catch {
    return `body is not JSON: ${a.body.slice(0, 200)}`;
  }
  return null;
}

/** Requests Node's HTTP parser itself refuses, written on a raw socket. */
function rawRequest(rng: Rng): { bytes: string; why: string } {
  const host = 'Host: 127.0.0.1\r\n';
  return rng.pick([
    { bytes: `GET /api/v1/flows HTTP/1.1\r\n${host}Bad Header Line\r\n\r\n`, why: 'header without colon' },
    { bytes: `GET /api/v1/flows HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`, why: 'header larger than 16 KiB' },
    { bytes: `BREW /api/v1/flows HTTP/1.1\r\n${host}\r\n`, why: 'method HTTP does not know' },
    { bytes: `GET /api/v1/flows HTTP/7.3\r\n${host}\r\n`, why: 'HTTP version' },
    { bytes: `POST /api/v1/flows HTTP/1.1\r\n${host}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, why: 'content-length with chunked' },
    { bytes: `POST /api/v1/flows HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nZZ\r\nxx\r\n0\r\n\r\n`, why: 'bad chunk size' },
    { bytes: `GET /api/v1/fl\u0001ows HTTP/1.1\r\n${host}\r\n`, why: 'control character in path' },
    { bytes: `CONNECT 127.0.0.1:22 HTTP/1.1\r\n${host}\r\n`, why: 'CONNECT' },
    { bytes: `GET /api/v1/flows HTTP/1.1\r\n${host}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, why: 'upgrade to websocket' },
    { bytes: `${rng.str(30, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ/ .:')}\r\n\r\n`, why: 'garbage request line' },
  ]);
}

function sendRaw(bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(h.hub.httpPort, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.setTimeout(5_000, () => s.destroy(new Error('no answer within 5 s')));
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      const text = Buffer.concat(chunks).toString('utf8');
      const sep = text.indexOf('\r\n\r\n');
      const len = /content-length: *(\d+)/i.exec(text.slice(0, sep));
      if (sep >= 0 && len && Buffer.byteLength(text.slice(sep + 4)) >= Number(len[1])) {
        s.destroy();
        resolve(text);
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    s.end(bytes);
  });
}

describe('REST fuzz', () => {
  it(`answers ${COUNT} malformed requests (seed ${SEED}) with 4xx and a JSON error, never 5xx`, async () => {
    const rng = prng(SEED);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const failures: string[] = [];
    const seen = new Map<number, number>();
    const requests = Array.from({ length: COUNT }, () => malformed(rng));
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < requests.length) {
          const req = requests[next++]!;
          const a = await send(agent, req).catch((err: Error) => ({ status: 0, contentType: '', body: err.message }));
          seen.set(a.status, (seen.get(a.status) ?? 0) + 1);
          const wrong = judge(req.method, a);
          if (wrong) failures.push(`${req.method} ${req.path.slice(0, 120)} (${req.why}): ${wrong}`);
        }
      }),
    );
    agent.destroy();

    for (let i = 0; i < RAW_COUNT; i++) {
      const raw = rawRequest(rng);
      const text = await sendRaw(raw.bytes).catch((err: Error) => `error ${err.message}`);
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1] ?? 0);
      seen.set(status, (seen.get(status) ?? 0) + 1);
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      const wrong = judge('RAW', { status, contentType: /content-type: *([^\r\n]+)/i.exec(text)?.[1] ?? '', body });
      if (wrong) failures.push(`raw (${raw.why}): ${wrong}`);
    }

    expect(failures.slice(0, 15), `seed ${SEED}: ${failures.length} bad answers`).toEqual([]);
    // The run exercised the refusals it means to: every class below was answered at least once.
    for (const status of [400, 401, 403, 404, 413, 415]) expect(seen.get(status) ?? 0, `status ${status}`).toBeGreaterThan(0);
    expect([...seen.values()].reduce((a, b) => a + b, 0)).toBe(COUNT + RAW_COUNT);
  });

  it('still serves /healthz and valid requests afterwards', async () => {
    expect((await api(h, null, 'GET', '/healthz')).status).toBe(200);
    const flows = await api(h, h.tokens.viewer, 'GET', '/api/v1/flows');
    expect(flows.status).toBe(200);
    expect(flows.body.items.map((f: { id: string }) => f.id)).toContain(ids.flow);
    expect((await api(h, h.tokens.viewer, 'GET', `/api/v1/backups/${ids.backup}`)).status).toBe(200);
  });
});
