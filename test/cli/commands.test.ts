/**
 * Every backhaulctl subcommand end to end: a real hub and agent processes, the CLI as its own
 * process over TLS to the AdminService. Each --json answer is compared with what REST answers
 * for the same object, and each error kind with its exit code and its one sentence.
 */
import { createHash } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../hub/pki/ca.js';
import { eventually, freePort, runAgentCli, startAgent, tempDir } from '../support/processes.js';
import { fileTarget, rawImage, Stack } from '../lifecycle/stack.js';
import { Ctl } from './cli-harness.js';

let stack: Stack;
let ctl: Ctl;
let dir: string;
let agentId: string;
let targets: Map<string, string>;
let imageA: string;

const sha256 = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');
/** An agent's view without the heartbeat time, which moves between two reads. */
const steady = ({ last_seen_at: _seen, ...rest }: Record<string, unknown>) => rest;

beforeAll(async () => {
  stack = await Stack.start();
  ctl = await Ctl.for(stack);
  dir = await tempDir('bh-ctl-images');
  imageA = await rawImage(dir, 'vm-a', 8, 6);
  const agent = await stack.addAgent([fileTarget('vm-a', imageA), fileTarget('vm-b', await rawImage(dir, 'vm-b', 4, 2))], {}, 'ctl-agent');
  agentId = agent.id;
  targets = await stack.targetsOf(agentId);
});

afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('agents', () => {
  it('list and show match REST', async () => {
    const list = await ctl.json(['agents', 'list']);
    const rest = (await stack.api('GET', '/api/v1/agents')).body;
    expect(list.items.map(steady)).toEqual(rest.items.map(steady));
    expect(list.items.map((a: { id: string }) => a.id)).toContain(agentId);
    const one = await ctl.json(['agents', 'show', agentId]);
    expect(steady(one)).toEqual(steady((await stack.api('GET', `/api/v1/agents/${agentId}`)).body));
    const table = await ctl.run(['agents', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^ID +NAME +STATUS[^\\n]*\\n${agentId} +ctl-agent +online`));
  });

  it('join-token enrolls a real agent, which disable cuts off and enable lets back', async () => {
    const t = await ctl.json(['agents', 'join-token', '--ttl', '10m', '--description', 'ctl test']);
    expect(t.token).toMatch(/^bhjt_/);
    expect(t.ca_sha256).toBe(ctl.caSha256);
    expect(Date.parse(t.expires_at) - Date.now()).toBeGreaterThan(9 * 60_000);
    const stateDir = await tempDir('bh-ctl-agent2');
    const enrolled = await runAgentCli(['enroll', '--hub', ctl.hub, '--token', t.token, '--ca-sha256', t.ca_sha256, '--name', 'ctl-second'], { BACKHAUL_AGENT_STATE_DIR: stateDir });
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const id = /agent ([0-9a-f-]{36})/.exec(enrolled.stdout)![1]!;
    const proc = startAgent(stateDir, { BACKHAUL_AGENT_TARGETS: '[]', BACKHAUL_AGENT_RECONNECT_BASE_MS: '100', BACKHAUL_AGENT_RECONNECT_CAP_MS: '300' }, 'agent-ctl-second');
    try {
      await stack.waitOnline(id);
      const disabled = await ctl.json(['agents', 'disable', id]);
      expect(disabled.status).toBe('disabled');
      // The stream closes just after the answer, so `online` may still flip: the rest is REST's.
      const { online: _o, ...rest } = steady((await stack.api('GET', `/api/v1/agents/${id}`)).body);
      expect(steady(disabled)).toMatchObject(rest);
      // Its stream is cut and its reconnects are refused: REST shows it offline, and it stays so.
      await eventually(async () => (await stack.api('GET', `/api/v1/agents/${id}`)).body.online === false, 10_000, 'disabled agent offline');
      await new Promise((r) => setTimeout(r, 1000));
      expect((await stack.api('GET', `/api/v1/agents/${id}`)).body).toMatchObject({ online: false, status: 'disabled' });
      expect((await ctl.json(['agents', 'enable', id])).status).not.toBe('disabled');
      await stack.waitOnline(id);
    } finally {
      await proc.kill('SIGKILL');
    }
  });
});

describe('targets', () => {
  it('list, show and add match REST', async () => {
    const list = await ctl.json(['targets', 'list', '--agent', agentId]);
    expect(list).toEqual((await stack.api('GET', `/api/v1/targets?agent_id=${agentId}`)).body);
    expect(list.items).toHaveLength(2);
    const id = targets.get('vm-a')!;
    expect(await ctl.json(['targets', 'show', id])).toEqual((await stack.api('GET', `/api/v1/targets/${id}`)).body);
    const added = await ctl.json(['targets', 'add', '--agent', agentId, '--ref', 'by-hand', '--name', 'by hand', '--driver', 'file', '--disk', 'sda=/nowhere/x.raw:4096', '--option', 'k=v']);
    expect(added).toMatchObject({ ref: 'by-hand', source: 'api', disks: [{ name: 'sda', path: '/nowhere/x.raw', size_bytes: 4096 }], options: { k: 'v' } });
    expect(added).toEqual((await stack.api('GET', `/api/v1/targets/${added.id}`)).body);
  });
});

describe('flows, executions, jobs and backups', () => {
  let flow: { id: string };
  let executionId: string;

  it('flows create, show by name, update, disable, enable and list match REST', async () => {
    flow = await ctl.json(['flows', 'create', 'ctl-flow', '--target', targets.get('vm-a')!, '--cron', '0 2 * * *', '--keep-last', '3', '--description', 'from the CLI']);
    expect(flow).toMatchObject({ name: 'ctl-flow', description: 'from the CLI', schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keep_last: 3 }, enabled: true });
    expect(await ctl.json(['flows', 'show', 'ctl-flow'])).toEqual((await stack.api('GET', `/api/v1/flows/${flow.id}`)).body);
    const updated = await ctl.json(['flows', 'update', 'ctl-flow', '--target', targets.get('vm-a')!, '--target', targets.get('vm-b')!, '--clear-schedule']);
    expect(updated).toMatchObject({ schedule: null, retention: { keep_last: 3 } });
    expect(updated.target_ids).toHaveLength(2);
    expect((await ctl.json(['flows', 'disable', flow.id])).enabled).toBe(false);
    expect((await ctl.json(['flows', 'enable', 'ctl-flow'])).enabled).toBe(true);
    expect(await ctl.json(['flows', 'list'])).toEqual((await stack.api('GET', '/api/v1/flows')).body);
  });

  it('flows run answers at once with the running execution in its REST shape; executions, jobs and backups match REST once it ended', async () => {
    const started = await ctl.json(['flows', 'run', 'ctl-flow']);
    expect(started).toMatchObject({ status: 'running', completed_at: null, flow_id: flow.id, job_counts: { total: 2 } });
    const rest = await stack.execution(started.id);
    expect(Object.keys(started).sort()).toEqual(Object.keys(rest).sort());
    executionId = started.id;
    const ended = await stack.finish(executionId);
    expect(ended.status).toBe('succeeded');
    // The flow keeps 3 backups: once the run ended, its retention prunes each target as a hub
    // job. Wait for those, so the CLI's read and REST's see the same execution.
    await eventually(async () => {
      const e = await stack.execution(executionId);
      return e.retention_jobs.length === 2 && e.retention_jobs.every((j) => ['succeeded', 'failed', 'cancelled'].includes(j.status));
    }, 20_000, 'the retention jobs');

    expect(await ctl.json(['executions', 'show', executionId])).toEqual(await stack.execution(executionId));
    expect(await ctl.json(['executions', 'list', '--flow', 'ctl-flow'])).toEqual((await stack.api('GET', `/api/v1/executions?flow_id=${flow.id}`)).body);
    expect(await ctl.json(['executions', 'list', '--status', 'succeeded', '--limit', '1'])).toEqual((await stack.api('GET', '/api/v1/executions?status=succeeded&limit=1')).body);
    const job = ended.jobs[0]!;
    expect(await ctl.json(['jobs', 'show', job.id])).toEqual((await stack.api('GET', `/api/v1/jobs/${job.id}`)).body);
    const log = await ctl.json(['jobs', 'log', job.id]);
    expect(log).toEqual((await stack.api('GET', `/api/v1/jobs/${job.id}/log`)).body);
    expect(log.items.length).toBeGreaterThan(0);
    const human = await ctl.run(['executions', 'show', executionId]);
    expect(human.stdout).toMatch(new RegExp(`execution ${executionId} succeeded in \\d+s: 2 succeeded, 0 failed, 0 cancelled`));

    const backups = await ctl.json(['backups', 'list', '--target', targets.get('vm-a')!]);
    expect(backups).toEqual((await stack.api('GET', `/api/v1/backups?target_id=${targets.get('vm-a')}`)).body);
    expect(backups.items).toHaveLength(1);
    const b = backups.items[0];
    expect(await ctl.json(['backups', 'show', b.id])).toEqual((await stack.api('GET', `/api/v1/backups/${b.id}`)).body);
  });

  it('backups verify and restore --wait end succeeded, the restored image has the source bytes, and delete removes the backup', async () => {
    const b = (await ctl.json(['backups', 'list', '--target', targets.get('vm-a')!])).items[0];
    const verified = await ctl.json(['backups', 'verify', b.id, '--wait']);
    expect(verified).toMatchObject({ kind: 'verify', status: 'succeeded' });
    expect(verified).toEqual((await stack.api('GET', `/api/v1/jobs/${verified.id}`)).body);

    const dest = join(dir, 'restored-a.raw');
    const restore = await ctl.run(['backups', 'restore', b.id, '--disk', `sda=${dest}`, '--create', '--wait']);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/restore\): succeeded 100%/);
    expect(await sha256(dest)).toBe(await sha256(imageA));

    const del = await ctl.run(['backups', 'delete', b.id]);
    expect(del.code, del.stderr).toBe(0);
    expect((await stack.api('GET', `/api/v1/backups/${b.id}`)).status).toBe(404);
  });

  it('flows delete removes the flow; its executions stay', async () => {
    const del = await ctl.run(['flows', 'delete', 'ctl-flow']);
    expect(del.code, del.stderr).toBe(0);
    expect((await stack.api('GET', `/api/v1/flows/${flow.id}`)).status).toBe(404);
    expect((await stack.api('GET', `/api/v1/executions/${executionId}`)).status).toBe(200);
  });
});

describe('tokens and roles', () => {
  it('an admin creates, lists and revokes tokens; a viewer reads but cannot run a flow; a revoked token is refused', async () => {
    const viewer = await ctl.json(['tokens', 'create', '--name', 'ctl-viewer', '--role', 'viewer']);
    expect(viewer).toMatchObject({ name: 'ctl-viewer', role: 'viewer', revoked_at: null });
    expect(viewer.token).toMatch(/^bh_/);
    const listed = await ctl.json(['tokens', 'list']);
    expect(listed.items.find((t: { id: string }) => t.id === viewer.id)).toEqual({ id: viewer.id, name: 'ctl-viewer', role: 'viewer', created_at: viewer.created_at, last_used_at: null, revoked_at: null });
    expect(JSON.stringify(listed)).not.toContain(viewer.token);

    expect((await ctl.run(['agents', 'list'], { token: viewer.token })).code).toBe(0);
    const flowId = (await stack.api('POST', '/api/v1/flows', { name: 'viewer-flow', target_ids: [targets.get('vm-b')] })).body.id;
    const run = await ctl.run(['flows', 'run', 'viewer-flow'], { token: viewer.token });
    expect(run.code).toBe(5);
    expect(run.stderr).toBe('backhaulctl: not allowed: this action needs the operator role; the token has viewer\n');
    expect((await stack.api('GET', `/api/v1/executions?flow_id=${flowId}`)).body.total).toBe(0);
    // Token management is admin only, even for reading.
    expect((await ctl.run(['tokens', 'list'], { token: viewer.token })).code).toBe(5);

    const revoked = await ctl.json(['tokens', 'revoke', viewer.id]);
    expect(revoked.revoked_at).not.toBeNull();
    const refused = await ctl.run(['agents', 'list'], { token: viewer.token });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toBe('backhaulctl: the hub refused the token: the token is unknown or revoked\n');
  });
});

describe('errors', () => {
  it('each kind has its exit code and one sentence on stderr, and the hub stays up', async () => {
    const cases: [string[], number, RegExp, Record<string, string | undefined>?][] = [
      [['flows', 'show', '3c5e1d1e-8b39-4a43-9e53-7f5d7a1b2c3d'], 6, /^backhaulctl: no flow 3c5e1d1e-8b39-4a43-9e53-7f5d7a1b2c3d\n$/],
      [['flows', 'show', 'no-such-flow'], 6, /^backhaulctl: no flow named "no-such-flow"\n$/],
      [['jobs', 'show', 'not-an-id'], 6, /^backhaulctl: nothing has that id/],
      [['executions', 'list', '--status', 'done'], 7, /^backhaulctl: status: /],
      [['flows', 'create', 'bad', '--timezone', 'Mars/Olympus', '--cron', '0 2 * * *'], 7, /^backhaulctl: schedule\.timezone: must be an IANA time zone/],
      [['agents', 'list'], 4, /^backhaulctl: the hub refused the token/, { BACKHAUL_TOKEN: 'bh_nope' }],
      [['agents', 'list'], 4, /^backhaulctl: no API token given/, { BACKHAUL_TOKEN: undefined }],
      [['agents', 'list'], 7, /^backhaulctl: no hub given/, { BACKHAUL_HUB: undefined }],
      [['agents', 'list'], 7, /^backhaulctl: no CA to trust the hub with/, { BACKHAUL_CA: undefined }],
      [['agents', 'frobnicate'], 7, /unknown command/],
    ];
    const port = await freePort();
    cases.push([['agents', 'list'], 3, new RegExp(`^backhaulctl: cannot reach the hub at 127.0.0.1:${port}: connect ECONNREFUSED`), { BACKHAUL_HUB: `127.0.0.1:${port}` }]);
    for (const [args, code, message, env] of cases) {
      const r = await ctl.run(args, { env });
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr, 'no stack trace').not.toMatch(/\n\s+at /);
    }
    expect((await ctl.run(['agents', 'list'])).code).toBe(0);
  });

  it('a CA other than the hub\'s is refused as an unreachable hub, not trusted', async () => {
    const other = join(ctl.home, 'other-ca.pem');
    await writeFile(other, (await CertificateAuthority.create()).ca.certPem);
    const r = await ctl.run(['agents', 'list'], { env: { BACKHAUL_CA: other } });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^backhaulctl: cannot reach the hub/);
  });
});

describe('login and help', () => {
  it('login pins the CA by fingerprint and stores hub, token and CA for later calls, readable by its owner only', async () => {
    const bare = { BACKHAUL_HUB: undefined, BACKHAUL_TOKEN: undefined, BACKHAUL_CA: undefined };
    const wrong = await ctl.run(['login', '--hub', ctl.hub, '--token', stack.token, '--ca-sha256', 'ab'.repeat(32)], { env: bare });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/refusing to trust this hub/);
    const ok = await ctl.run(['login', '--hub', ctl.hub, '--token', stack.token, '--ca-sha256', ctl.caSha256], { env: bare });
    expect(ok.code, ok.stderr).toBe(0);
    const file = join(ctl.home, '.config', 'backhaul', 'config.json');
    expect(ok.stdout).toBe(`logged in to ${ctl.hub}; saved in ${file}\n`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const after = await ctl.run(['agents', 'list', '--json'], { env: bare });
    expect(after.code, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout).items.length).toBeGreaterThan(0);
    // A flag overrides one part of the stored login.
    const bad = await ctl.run(['--token', 'bh_other', 'agents', 'list'], { env: bare });
    expect(bad.code).toBe(4);
  });

  it('every command has --help with an example', async () => {
    const top = await ctl.run(['--help']);
    expect(top.code).toBe(0);
    const groups = ['agents', 'targets', 'flows', 'executions', 'jobs', 'backups', 'tokens', 'login'];
    for (const g of groups) expect(top.stdout).toContain(`  ${g}`);
    for (const g of groups) {
      const help = await ctl.run([g, '--help']);
      expect(help.stdout, g).toMatch(/Examples?:\n  backhaulctl /);
      const verbs = [...help.stdout.matchAll(/^  ([a-z-]+) /gm)].map((m) => m[1]!).filter((v) => v !== 'help');
      for (const v of verbs) {
        const sub = await ctl.run([g, v, '--help']);
        expect(sub.code, `${g} ${v}`).toBe(0);
        expect(sub.stdout, `${g} ${v}`).toMatch(/Examples?:\n  backhaulctl /);
      }
    }
  });
});
