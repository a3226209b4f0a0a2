import { createHash, randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken, revokeApiToken } from '../../hub/auth/api-tokens.js';
import { query } from '../support/database.js';
import { HUB_BIN } from '../support/processes.js';
import { api, expectErrorShape, startRestHub, type RestHub } from './rest-support.js';

let h: RestHub;

beforeAll(async () => {
  h = await startRestHub();
});

afterAll(async () => {
  await h?.close();
});

function hubCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [HUB_BIN, ...args], { env: { ...process.env, DATABASE_URL: h.db.url, LOG_LEVEL: 'warn' } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('REST authentication', () => {
  it('refuses requests without a token, with a malformed header, and with an unknown token (401 UNAUTHENTICATED)', async () => {
    for (const headers of [{}, { authorization: 'Basic dXNlcjpwYXNz' }, { authorization: 'Bearer' }, { authorization: `Bearer bh_${'A'.repeat(43)}` }, { authorization: 'Bearer not-ours' }] as Record<string, string>[]) {
      const r = await api(h, null, 'GET', '/api/v1/flows', undefined, headers);
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expectErrorShape(r.body);
      expect(r.body.code).toBe('UNAUTHENTICATED');
      expect(r.headers.get('www-authenticate')).toBe('Bearer');
    }
  });

  it('accepts a valid token, and refuses it once revoked', async () => {
    const t = await createApiToken(h.hub.orm.em.fork(), 'soon-revoked', 'viewer');
    expect((await api(h, t.token, 'GET', '/api/v1/agents')).status).toBe(200);
    await revokeApiToken(h.hub.orm.em.fork(), t.id);
    const r = await api(h, t.token, 'GET', '/api/v1/agents');
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('UNAUTHENTICATED');
  });

  it('enforces roles: viewer reads only, operator writes, only admin deletes backups (403 PERMISSION_DENIED)', async () => {
    expect((await api(h, h.tokens.viewer, 'GET', '/api/v1/flows')).status).toBe(200);
    const denied = await api(h, h.tokens.viewer, 'POST', '/api/v1/flows', { name: 'by-viewer' });
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({ code: 'PERMISSION_DENIED', details: { required_role: 'operator', role: 'viewer' } });
    expect((await query(h.db.url, "select 1 from flows where name = 'by-viewer'")).length).toBe(0);

    const created = await api(h, h.tokens.operator, 'POST', '/api/v1/flows', { name: 'by-operator' });
    expect(created.status).toBe(201);
    expect(created.body.name).toBe('by-operator');

    const missing = randomUUID();
    const operatorDelete = await api(h, h.tokens.operator, 'DELETE', `/api/v1/backups/${missing}`);
    expect(operatorDelete.status).toBe(403);
    expect(operatorDelete.body.code).toBe('PERMISSION_DENIED');
    // The admin passes the role check and reaches the lifecycle, which finds nothing.
    const adminDelete = await api(h, h.tokens.admin, 'DELETE', `/api/v1/backups/${missing}`);
    expect(adminDelete.status).toBe(404);
    expect(adminDelete.body.code).toBe('NOT_FOUND');
  });

  it('checks the token before the body: no token and a bad or huge body is still 401; a viewer with a bad body is 403', async () => {
    const noToken = await api(h, null, 'POST', '/api/v1/flows', '{not json');
    expect(noToken.status).toBe(401);
    const huge = await api(h, null, 'POST', '/api/v1/flows', JSON.stringify({ name: 'x'.repeat(3 * 1024 * 1024) }));
    expect(huge.status).toBe(401);
    const viewer = await api(h, h.tokens.viewer, 'POST', '/api/v1/flows', { name: 42 });
    expect(viewer.status).toBe(403);
  });

  it('serves health and the OpenAPI document without a token', async () => {
    expect((await api(h, null, 'GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await api(h, null, 'GET', '/readyz')).body).toEqual({ status: 'ready' });
    expect((await api(h, null, 'GET', '/api/v1/openapi.json')).status).toBe(200);
  });

  it('stores only the SHA-256 of a token, and records its use at most once a minute', async () => {
    const t = await createApiToken(h.hub.orm.em.fork(), 'hash-check', 'viewer');
    expect(t.token).toMatch(/^bh_[A-Za-z0-9_-]{43}$/);
    const [row] = await query(h.db.url, 'select token_hash, last_used_at from api_tokens where id = $1', [t.id]);
    expect(row!.token_hash).toBe(createHash('sha256').update(t.token).digest('hex'));
    expect(row!.last_used_at).toBeNull();
    const dump = await query(h.db.url, "select string_agg(a::text, ' ') as all from api_tokens a");
    expect(String(dump[0]!.all)).not.toContain(t.token);
    expect(String(dump[0]!.all)).not.toContain(t.token.slice(3));

    await api(h, t.token, 'GET', '/api/v1/agents');
    const [first] = await query(h.db.url, 'select last_used_at from api_tokens where id = $1', [t.id]);
    expect(first!.last_used_at).not.toBeNull();
    await api(h, t.token, 'GET', '/api/v1/agents');
    const [second] = await query(h.db.url, 'select last_used_at from api_tokens where id = $1', [t.id]);
    expect(second!.last_used_at).toEqual(first!.last_used_at);
  });

  it('backhaul-hub api-token create, list and revoke work against the same database', async () => {
    const created = await hubCli(['api-token', 'create', '--name', 'from-cli', '--role', 'operator', '--json']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const t = JSON.parse(created.stdout) as { id: string; name: string; role: string; token: string };
    expect(t).toMatchObject({ name: 'from-cli', role: 'operator' });
    expect((await api(h, t.token, 'POST', '/api/v1/flows', { name: 'made-with-cli-token' })).status).toBe(201);

    const listed = await hubCli(['api-token', 'list', '--json']);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.stdout) as { id: string; revoked_at: string | null }[];
    expect(rows.find((r) => r.id === t.id)).toMatchObject({ revoked_at: null });
    expect(listed.stdout).not.toContain(t.token);

    const badRole = await hubCli(['api-token', 'create', '--name', 'x', '--role', 'root']);
    expect(badRole.code).not.toBe(0);
    expect(badRole.stderr).toMatch(/viewer, operator, admin/);

    const revoked = await hubCli(['api-token', 'revoke', t.id]);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(/revoked API token/);
    expect((await api(h, t.token, 'GET', '/api/v1/flows')).status).toBe(401);

    const unknown = await hubCli(['api-token', 'revoke', randomUUID()]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no API token/);
  });
});
