import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { createToken, freePort, runAgentCli, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';

let db: TestDatabase;
let hub: Proc;
let opts: HubProcOptions;

const agentCount = async () => Number((await query<{ n: string }>(db.url, 'select count(*) as n from agents'))[0]!.n);

beforeAll(async () => {
  db = await createTestDatabase();
  opts = { port: await freePort(), dataDir: await tempDir('bh-hub'), databaseUrl: db.url };
  hub = await startHub(opts);
});

afterAll(async () => {
  await hub?.kill();
  await db?.drop();
});

describe('backhaul-agent enroll against a real hub process', () => {
  it('enrolls: key and certificate stored 0600, certificate names the agent, token spent', async () => {
    const t = await createToken(opts);
    const stateDir = await tempDir('bh-agent');
    const r = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', t.token, '--ca-sha256', t.ca_sha256, '--name', 'alpha'], {
      BACKHAUL_AGENT_STATE_DIR: stateDir,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const agentId = /agent ([0-9a-f-]{36})/.exec(r.stdout)![1]!;
    for (const f of ['agent.key', 'agent.crt', 'ca.crt', 'agent.json']) {
      expect(((await stat(join(stateDir, f))).mode & 0o777).toString(8)).toBe('600');
    }
    const cert = new X509Certificate(await readFile(join(stateDir, 'agent.crt')));
    expect(cert.subject).toBe(`CN=${agentId}`);
    expect(cert.verify(new X509Certificate(await readFile(join(stateDir, 'ca.crt'))).publicKey)).toBe(true);
    const [row] = await query(db.url, 'select name, online, cert_fingerprint from agents where id = $1', [agentId]);
    expect(row).toMatchObject({ name: 'alpha', online: false });
    expect(row!.cert_fingerprint).toBe(cert.fingerprint256.replace(/:/g, '').toLowerCase());
    // The private key never left the agent: nothing in the hub's database holds it.
    const key = (await readFile(join(stateDir, 'agent.key'), 'utf8')).split('\n')[1]!;
    const dump = await query(db.url, `select (select string_agg(a::text, ' ') from agents a) || (select string_agg(j::text, ' ') from join_tokens j) as all`);
    expect(String(dump[0]!.all)).toContain(agentId);
    expect(String(dump[0]!.all)).not.toContain(key);
    const [tok] = await query(db.url, 'select used_at, used_by_agent from join_tokens where used_by_agent = $1', [agentId]);
    expect(tok!.used_at).not.toBeNull();
  });

  it('refuses a used token, with a clear message, and creates nothing', async () => {
    const t = await createToken(opts);
    const first = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', t.token, '--ca-sha256', t.ca_sha256], { BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent') });
    expect(first.code).toBe(0);
    const before = await agentCount();
    const dir = await tempDir('bh-agent');
    const again = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', t.token, '--ca-sha256', t.ca_sha256], { BACKHAUL_AGENT_STATE_DIR: dir });
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/JOIN_TOKEN_USED: the join token was already used at /);
    expect(await agentCount()).toBe(before);
    await expect(stat(join(dir, 'agent.json'))).rejects.toThrow();
  });

  it('refuses an expired token and an unknown token', async () => {
    const t = await createToken(opts, '1s');
    await new Promise((r) => setTimeout(r, 1_200));
    const before = await agentCount();
    const expired = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', t.token, '--ca-sha256', t.ca_sha256], { BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent') });
    expect(expired.code).toBe(4);
    expect(expired.stderr).toMatch(/JOIN_TOKEN_EXPIRED: the join token expired at /);
    const unknown = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', 'bhjt_nope', '--ca-sha256', t.ca_sha256], { BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent') });
    expect(unknown.code).toBe(4);
    expect(unknown.stderr).toMatch(/JOIN_TOKEN_UNKNOWN: the join token is not known to this hub/);
    expect(await agentCount()).toBe(before);
    // The expired token was not spent by the refusal.
    const [tok] = await query(db.url, 'select used_at from join_tokens where expires_at = $1', [new Date(t.expires_at)]);
    expect(tok!.used_at).toBeNull();
  });

  it('refuses a hub whose CA does not match the fingerprint, before sending anything', async () => {
    const t = await createToken(opts);
    const wrong = 'ab'.repeat(32);
    const before = await agentCount();
    const r = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', t.token, '--ca-sha256', wrong], { BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent') });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`the hub's CA fingerprint is ${t.ca_sha256}, not the expected ${wrong}; refusing to trust this hub`);
    expect(await agentCount()).toBe(before);
    // The token was never presented, so it is still good.
    const ok = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', t.token, '--ca-sha256', t.ca_sha256.toUpperCase().match(/../g)!.join(':')], {
      BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent'),
    });
    expect(ok.code).toBe(0);
  });

  it('reports bad arguments and an unreachable hub with distinct exit codes', async () => {
    const bad = await runAgentCli(['enroll', '--hub', `127.0.0.1:${opts.port}`, '--token', 'x', '--ca-sha256', 'not-hex'], { BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent') });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--ca-sha256 must be 64 hex digits/);
    const closed = await freePort();
    const down = await runAgentCli(['enroll', '--hub', `127.0.0.1:${closed}`, '--token', 'x', '--ca-sha256', 'ab'.repeat(32)], { BACKHAUL_AGENT_STATE_DIR: await tempDir('bh-agent') });
    expect(down.code).toBe(3);
    expect(down.stderr).toMatch(/cannot reach the hub at 127\.0\.0\.1:\d+/);
    expect(hub.child.exitCode).toBeNull();
  });
});
