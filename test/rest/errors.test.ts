import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, query } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';
import { api, expectErrorShape, insertAgent, insertExecution, insertFlow, insertTarget, startRestHub, type RestHub } from './rest-support.js';

let h: RestHub;

beforeAll(async () => {
  h = await startRestHub({ env: { BACKHAUL_HUB_API_BODY_LIMIT_BYTES: '65536' } });
});

afterAll(async () => {
  await h?.close();
});

const op = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => api(h, h.tokens.operator, method, path, body, headers);

describe('REST error answers', () => {
  it('400 INVALID_ARGUMENT names the field, nested fields by dotted path, unknown keys by name', async () => {
    const agentId = await insertAgent(h.db.url);
    const cases: [unknown, string][] = [
      [{ name: 7 }, 'name'],
      [{ name: 'f', schedule: { cron: '0 2 * * *', timezone: 'Mars/Olympus' } }, 'schedule.timezone'],
      [{ name: 'f', target_ids: ['not-a-uuid'] }, 'target_ids.0'],
      [{ name: 'f', colour: 'blue' }, 'colour'],
      [[1, 2], 'body'],
    ];
    for (const [body, field] of cases) {
      const r = await op('POST', '/api/v1/flows', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expectErrorShape(r.body);
      expect(r.body.code).toBe('INVALID_ARGUMENT');
      expect(r.body.details!.field).toBe(field);
    }
    const disk = await op('POST', '/api/v1/targets', { agent_id: agentId, ref: 'vm1', name: 'vm1', driver: 'qemu', disks: [{ name: 'vda', path: '/x', size_bytes: -1 }] });
    expect(disk.status).toBe(400);
    expect(disk.body.details.field).toBe('disks.0.size_bytes');
    const q = await op('GET', '/api/v1/executions?limit=0');
    expect(q.status).toBe(400);
    expect(q.body.details.field).toBe('limit');
    const status = await op('GET', '/api/v1/executions?status=done');
    expect(status.body.details.field).toBe('status');
  });

  it('an empty PATCH names what is missing, and an empty JSON body on a POST that needs one is a 400', async () => {
    const flowId = await insertFlow(h.db.url);
    const patch = await op('PATCH', `/api/v1/flows/${flowId}`, {});
    expect(patch.status).toBe(400);
    expect(patch.body.message).toMatch(/at least one field/);
    const empty = await op('POST', '/api/v1/flows', '');
    expect(empty.status).toBe(400);
    expect(empty.body.details.field).toBe('body');
  });

  it('404 NOT_FOUND for an unknown id, an id that is not a UUID, an over-long id, and an unknown route or method', async () => {
    for (const [method, path] of [
      ['GET', `/api/v1/flows/${randomUUID()}`],
      ['GET', '/api/v1/flows/42'],
      ['GET', `/api/v1/jobs/${'a'.repeat(500)}`],
      ['POST', `/api/v1/flows/${randomUUID()}/run`],
      ['GET', `/api/v1/jobs/${randomUUID()}/log`],
      ['GET', '/api/v1/nothing-here'],
      ['PUT', '/api/v1/flows'],
      ['GET', '/'],
    ]) {
      const r = await op(method!, path!);
      expect(r.status, `${method} ${path}`).toBe(404);
      expectErrorShape(r.body);
      expect(r.body.code).toBe('NOT_FOUND');
    }
  });

  it('409 for a taken name (ALREADY_EXISTS) and for a flow already running (FLOW_ALREADY_RUNNING, naming the execution)', async () => {
    expect((await op('POST', '/api/v1/flows', { name: 'twice' })).status).toBe(201);
    const dup = await op('POST', '/api/v1/flows', { name: 'twice' });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ code: 'ALREADY_EXISTS', details: { field: 'name' } });

    const agentId = await insertAgent(h.db.url);
    const target = await insertTarget(h.db.url, agentId);
    const flowId = await insertFlow(h.db.url, { targetIds: [target.id] });
    const executionId = await insertExecution(h.db.url, { flowId, total: 1 });
    const busy = await op('POST', `/api/v1/flows/${flowId}/run`);
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ code: 'FLOW_ALREADY_RUNNING', details: { execution_id: executionId } });
  });

  it('422 for a flow with no targets, and no execution is left behind', async () => {
    const flowId = await insertFlow(h.db.url);
    const r = await op('POST', `/api/v1/flows/${flowId}/run`);
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('FLOW_HAS_NO_TARGETS');
    expect((await query(h.db.url, 'select 1 from executions where flow_id = $1', [flowId])).length).toBe(0);
  });

  it('413 PAYLOAD_TOO_LARGE past the body limit, 415 for a body that is not JSON, 400 for broken JSON', async () => {
    const big = await op('POST', '/api/v1/flows', { name: 'big', description: 'x'.repeat(70_000) });
    expect(big.status).toBe(413);
    expect(big.body.code).toBe('PAYLOAD_TOO_LARGE');
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
      const r = await op('POST', '/api/v1/flows', 'name=x', { 'content-type': type });
      expect(r.status, type).toBe(415);
      expect(r.body.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    for (const text of ['{"name": "x"', '{name: "x"}', 'null x', '{"__proto__": {"admin": true}, "name": "p"}']) {
      const r = await op('POST', '/api/v1/flows', text);
      expect(r.status, text).toBe(400);
      expect(r.body.code).toBe('INVALID_ARGUMENT');
    }
  });

  it('keeps answering after all of that', async () => {
    expect((await op('GET', '/api/v1/flows')).status).toBe(200);
  });
});

/** Every route the brief promises; the document must describe each, and nothing the server lacks. */
const ROUTES = [
  'get /healthz',
  'get /readyz',
  'get /api/v1/openapi.json',
  'get /api/v1/agents',
  'get /api/v1/agents/{id}',
  'post /api/v1/agents/{id}/disable',
  'post /api/v1/agents/{id}/enable',
  'get /api/v1/targets',
  'post /api/v1/targets',
  'get /api/v1/targets/{id}',
  'get /api/v1/flows',
  'post /api/v1/flows',
  'get /api/v1/flows/{id}',
  'patch /api/v1/flows/{id}',
  'delete /api/v1/flows/{id}',
  'get /api/v1/flows/{id}/history',
  'post /api/v1/flows/{id}/enable',
  'post /api/v1/flows/{id}/disable',
  'post /api/v1/flows/{id}/run',
  'get /api/v1/executions',
  'get /api/v1/executions/{id}',
  'post /api/v1/executions/{id}/cancel',
  'get /api/v1/jobs/{id}',
  'get /api/v1/jobs/{id}/log',
  'post /api/v1/jobs/{id}/cancel',
  'get /api/v1/backups',
  'get /api/v1/backups/{id}',
  'post /api/v1/backups/{id}/restore',
  'post /api/v1/backups/{id}/verify',
  'delete /api/v1/backups/{id}',
];

describe('OpenAPI document', () => {
  it('parses, lists every route with its responses, and every $ref resolves', async () => {
    const r = await fetch(`${h.base}/api/v1/openapi.json`);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    const doc = JSON.parse(await r.text()) as {
      openapi: string;
      paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown>; parameters: { name: string; in: string }[]; requestBody?: unknown }>>;
      components: { schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe('3.1.0');
    const listed = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    expect(listed.sort()).toEqual([...ROUTES].sort());

    const flowRun = doc.paths['/api/v1/flows/{id}/run']!.post!;
    expect(Object.keys(flowRun.responses).sort()).toEqual(['202', '401', '403', '404', '409', '422', '503']);
    expect(flowRun.parameters).toEqual([expect.objectContaining({ name: 'id', in: 'path', required: true })]);
    expect(doc.paths['/api/v1/executions']!.get!.parameters.map((p) => p.name).sort()).toEqual(['flow_id', 'limit', 'offset', 'status']);
    expect(doc.paths['/healthz']!.get!.security).toEqual([]);
    expect(doc.paths['/api/v1/flows']!.post!.requestBody).toBeDefined();
    expect(doc.paths['/api/v1/backups/{id}']!.delete!).toMatchObject({ 'x-required-role': 'admin' });

    // Request bodies are described as clients write them: fields with defaults are optional.
    const createFlow = doc.components.schemas.CreateFlowRequest as { required: string[] };
    expect(createFlow.required).toEqual(['name']);
    const job = doc.components.schemas.Job as { required: string[] };
    expect(job.required).toContain('percent');

    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(20);
    for (const id of refs) expect(doc.components.schemas, id).toHaveProperty(id);
  });
});

describe('database outage', () => {
  it('answers 503 UNAVAILABLE (not 500) when the database is gone, while /healthz still answers', async () => {
    const db = await createTestDatabase('bh_rest_gone');
    const hub = await startInProcessHub(db.url);
    const base = `http://127.0.0.1:${hub.httpPort}`;
    try {
      await db.drop();
      const flows = await api({ base }, 'bh_whatever-token-value', 'GET', '/api/v1/flows');
      expect(flows.status).toBe(503);
      expect(flows.body.code).toBe('UNAVAILABLE');
      const ready = await api({ base }, null, 'GET', '/readyz');
      expect(ready.status).toBe(503);
      expect(ready.body.code).toBe('UNAVAILABLE');
      expect((await api({ base }, null, 'GET', '/healthz')).status).toBe(200);
    } finally {
      // The stop cannot record agents offline in a database that no longer exists.
      await expect(hub.stop()).rejects.toThrow();
    }
  });
});
