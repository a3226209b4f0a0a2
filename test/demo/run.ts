/**
 * `npm run demo`: the newcomer's tour on the embedded defaults, driven the way an operator drives
 * Backhaul. A real `backhaul-hub serve` process with its own embedded PostgreSQL; a join token
 * and an API token from `backhaul-hub`'s admin commands; a real `backhaul-agent` process enrolled
 * with the token; then a protection flow run twice with `backhaulctl flows run --wait` (a full
 * backup, then an incremental), its live bars on the terminal, and through REST a restore whose
 * reported SHA-256 is checked against the disk, plus a verify of the repository.
 *
 * With qemu-storage-daemon installed the VM disk is a qcow2 image in a real daemon and the qemu
 * driver reads it; otherwise a raw image and the file driver. The demo says which.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionDetailView, JobView } from '../../hub/lifecycle/read-model.js';
import { stageLabel } from '../../hub/cli/format.js';
import { AGENT_BIN, eventually, freePort, HUB_BIN, hubEnv, ROOT, startAgent, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';
import { MiB, StorageDaemon } from '../support/qemu.js';

const run = promisify(execFile);
const tty = process.stdout.isTTY;
const bold = (t: string) => (tty ? `\x1b[1m${t}\x1b[0m` : t);
const step = (n: number, text: string) => process.stdout.write(`\n${bold(`${n}. ${text}`)}\n`);
const show = (text: string) => process.stdout.write(text.replace(/^(?=.)/gm, '   '));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'partial']);

const DISK = 256 * MiB;
const CTL_BIN = join(ROOT, 'dist/hub/cli/main.js');

async function hasQemu(): Promise<boolean> {
  try {
    await run('qemu-storage-daemon', ['--version']);
    await run('qemu-img', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** The REST API with a bearer token; a non-2xx answer throws with the API's code and message. */
class Api {
  constructor(
    private readonly base: string,
    private readonly token: string,
  ) {}

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(this.base + path, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${String(json.code)}: ${String(json.message)}`);
    return json as T;
  }
}

function bar(j: JobView, label: string): string {
  const live = !TERMINAL.has(j.status);
  const filled = '#'.repeat(Math.round(j.percent / 5)).padEnd(20, '.');
  const detail =
    `${mib(j.bytes_done)} of ${mib(j.bytes_total)}` +
    (live && j.rate_bytes_per_second ? `, ${mib(j.rate_bytes_per_second)}/s, ETA ${j.eta_seconds ?? '?'} s` : '') +
    (live && j.bottleneck ? `, busiest: ${stageLabel(j.bottleneck)}` : '');
  return `${label.padEnd(10)} [${filled}] ${String(j.percent).padStart(3)}%  ${j.status}${live && j.phase ? `/${j.phase}` : ''}  ${detail}`;
}

/** Polls a job through REST until it ends, drawing its bar: redrawn on a TTY, a line per change otherwise. */
async function followJob(api: Api, get: () => Promise<JobView>, label: string): Promise<JobView> {
  let last = '';
  for (;;) {
    const j = await get();
    const line = bar(j, label);
    if (line !== last) {
      process.stdout.write(tty ? `\r   ${line.padEnd(100)}` : `   ${line}\n`);
      last = line;
    }
    if (TERMINAL.has(j.status)) {
      if (tty) process.stdout.write('\n');
      return j;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Runs the flow the way an operator does, `backhaulctl flows run demo-nightly --wait`, with the
 * terminal handed over so its live bars show; then reads the execution it ran back through REST.
 */
async function runFlow(api: Api, ctlEnv: NodeJS.ProcessEnv, flowId: string, label: string): Promise<{ execution: ExecutionDetailView; job: JobView }> {
  show(`$ backhaulctl flows run demo-nightly --wait\n`);
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, [CTL_BIN, 'flows', 'run', 'demo-nightly', '--wait'], { env: ctlEnv, stdio: 'inherit' });
    child.once('error', reject);
    child.once('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  const latest = (await api.call<{ items: { id: string }[] }>('GET', `/api/v1/executions?flow_id=${flowId}&limit=1`)).items[0]!;
  const execution = await api.call<ExecutionDetailView>('GET', `/api/v1/executions/${latest.id}`);
  const job = execution.jobs[0]!;
  if (code !== 0 || execution.status !== 'succeeded') throw new Error(`the ${label} run exited ${code}; the execution ended ${execution.status}: ${job.error_code}: ${job.error_message}`);
  return { execution, job };
}

async function main(): Promise<void> {
  const root = await tempDir('backhaul-demo');
  await chmod(root, 0o711);
  const procs: Proc[] = [];
  let qsd: StorageDaemon | null = null;
  try {
    const qemu = await hasQemu();
    // The embedded defaults: no DATABASE_URL, whatever the caller's environment says.
    const hubOpts: HubProcOptions = { port: await freePort(), dataDir: join(root, 'hub'), env: { LOG_LEVEL: 'info' } };
    step(1, `Starting backhaul-hub on 127.0.0.1:${hubOpts.port} with an embedded PostgreSQL in ${hubOpts.dataDir}`);
    const t0 = Date.now();
    const hub = await startHub(hubOpts);
    procs.push(hub);
    const started = hub.lines.find((l) => l.msg === 'hub started')!;
    const base = `http://127.0.0.1:${started.http_port as number}`;
    show(`hub is up in ${Date.now() - t0} ms; REST API on ${base}; CA fingerprint ${started.ca_sha256 as string}\n`);

    step(2, 'Creating an operator API token and a join token with backhaul-hub');
    const hubCli = async (...args: string[]) => (await run(process.execPath, [HUB_BIN, ...args], { env: hubEnv(hubOpts) })).stdout;
    const apiToken = JSON.parse(await hubCli('api-token', 'create', '--name', 'demo', '--role', 'admin', '--json')) as { token: string };
    const join_ = JSON.parse(await hubCli('token', 'create', '--json', '--ttl', '10m')) as { token: string; ca_sha256: string };
    const api = new Api(base, apiToken.token);
    // backhaulctl reaches the hub's gRPC port over TLS, trusting the CA that `backhaul-hub ca` prints.
    const caFile = join(root, 'hub-ca.pem');
    await writeFile(caFile, await hubCli('ca'));
    const ctlEnv = { ...process.env, BACKHAUL_HUB: `127.0.0.1:${hubOpts.port}`, BACKHAUL_TOKEN: apiToken.token, BACKHAUL_CA: caFile };
    show('api token and join token created (only their SHA-256 is stored); the CA saved for backhaulctl\n');

    step(3, 'Enrolling a local agent with the join token (it checks the CA fingerprint, sends a CSR)');
    const stateDir = join(root, 'agent');
    const enrolled = await run(process.execPath, [AGENT_BIN, 'enroll', '--hub', `127.0.0.1:${hubOpts.port}`, '--token', join_.token, '--ca-sha256', join_.ca_sha256, '--name', 'demo-agent'], {
      env: { ...process.env, BACKHAUL_AGENT_STATE_DIR: stateDir, LOG_LEVEL: 'warn' },
    });
    show(enrolled.stdout);
    const agentId = /agent ([0-9a-f-]{36})/.exec(enrolled.stdout)![1]!;

    step(4, `Preparing a ${mib(DISK)} VM disk: ${qemu ? 'qcow2 in a qemu-storage-daemon, read by the qemu driver (QMP + NBD, dirty bitmaps)' : 'raw image read by the file driver (qemu-storage-daemon is not installed)'}`);
    const initial = Buffer.concat([randomBytes(96 * MiB), Buffer.alloc(DISK - 96 * MiB)]);
    let target: Record<string, unknown>;
    let content: () => Promise<Buffer>;
    let change: (offset: number, data: Buffer) => Promise<void>;
    if (qemu) {
      qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: DISK }] });
      await qsd.write('disk0', 0, initial.subarray(0, 96 * MiB));
      target = { id: 'demo-vm', name: 'demo-vm', driver: 'qemu', disks: [{ name: 'sda', path: 'disk0' }], options: { qmpSocket: qsd.driverQmpSocket, nbdSocket: qsd.nbdSocket } };
      content = () => qsd!.content('disk0');
      change = (o, d) => qsd!.write('disk0', o, d);
    } else {
      const image = join(root, 'demo-vm.raw');
      await writeFile(image, initial);
      target = { id: 'demo-vm', name: 'demo-vm', driver: 'file', disks: [{ name: 'sda', path: image }] };
      content = () => readFile(image);
      change = async (o, d) => {
        const b = await readFile(image);
        d.copy(b, o);
        await writeFile(image, b);
      };
    }
    show(`driver: ${qemu ? 'qemu' : 'file'}; 96 MiB of data, the rest zeros\n`);

    step(5, 'Starting the agent: one mTLS stream to the hub, Hello with its inventory');
    procs.push(startAgent(stateDir, { BACKHAUL_AGENT_TARGETS: JSON.stringify([target]), LOG_LEVEL: 'warn' }, 'agent'));
    await eventually(async () => (await api.call<{ online: boolean }>('GET', `/api/v1/agents/${agentId}`)).online, 20_000, 'the agent to come online');
    const targets = await eventually(async () => (await api.call<{ items: { id: string; ref: string }[] }>('GET', `/api/v1/targets?agent_id=${agentId}`)).items, 10_000, 'the inventory');
    show(`GET /agents/${agentId}: online; its inventory is target ${targets[0]!.ref} (${targets[0]!.id})\n`);
    const flow = await api.call<{ id: string }>('POST', '/api/v1/flows', { name: 'demo-nightly', target_ids: [targets[0]!.id], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keep_last: 7 } });
    show(`POST /flows: flow demo-nightly (${flow.id})\n`);

    step(6, 'Full backup, run and followed with backhaulctl');
    const fullStart = Date.now();
    const full = await runFlow(api, ctlEnv, flow.id, 'full');
    const atFull = await content();
    const fullBackup = await api.call<{ bytes_total: number }>('GET', `/api/v1/backups/${full.job.backup_id}`);
    show(`${((Date.now() - fullStart) / 1000).toFixed(1)} s: succeeded at ${full.execution.completed_at}; backup ${full.job.backup_id} of ${mib(fullBackup.bytes_total)}, ${mib(full.job.bytes_transferred)} sent new\n`);

    step(7, 'The VM writes 8 MiB in 4 places; the flow runs again: an incremental');
    for (const o of [5, 40, 90, 200]) await change(o * MiB, randomBytes(2 * MiB));
    const atIncr = await content();
    const incrStart = Date.now();
    const incr = await runFlow(api, ctlEnv, flow.id, 'incr');
    show(
      `${((Date.now() - incrStart) / 1000).toFixed(1)} s: ${mib(incr.job.bytes_transferred)} sent new, ${mib(incr.job.bytes_reused)} reused` +
        `${qemu ? ' (only the changed chunks were read, from the dirty bitmap)' : ' (the file driver reads everything and sends what the hub lacks)'}\n`,
    );
    const stats = (await api.call<{ statistics: { executions_total: number; succeeded: number; success_rate: number } }>('GET', `/api/v1/flows/${flow.id}`)).statistics;
    show(`flow statistics: ${stats.executions_total} executions, ${stats.succeeded} succeeded, success rate ${stats.success_rate}\n`);

    step(8, 'Restoring both backups to new raw images (POST /backups/…/restore), then verifying the incremental');
    for (const [name, b, expected] of [
      ['full', full.job.backup_id!, atFull],
      ['incr', incr.job.backup_id!, atIncr],
    ] as const) {
      const path = join(root, `restored-${name}.raw`);
      const job = await api.call<JobView>('POST', `/api/v1/backups/${b}/restore`, { disks: [{ disk_name: 'sda', path, format: 'raw', create: true }] });
      const r = await followJob(api, () => api.call<JobView>('GET', `/api/v1/jobs/${job.id}`), `restore`);
      if (r.status !== 'succeeded') throw new Error(`the restore of the ${name} backup ${r.status}: ${r.error_code}: ${r.error_message}`);
      const reported = (r.result as { disks: { sha256: string }[] }).disks[0]!.sha256;
      const actual = sha(await readFile(path));
      if (reported !== sha(expected) || actual !== reported) throw new Error(`the restore of the ${name} backup does not match the disk at its backup`);
      show(`${name}: SHA-256 ${actual} equals the disk at that backup\n`);
    }
    const verifyJob = await api.call<JobView>('POST', `/api/v1/backups/${incr.job.backup_id}/verify`);
    const verify = await followJob(api, () => api.call<JobView>('GET', `/api/v1/jobs/${verifyJob.id}`), 'verify');
    if (verify.status !== 'succeeded') throw new Error(`verify ${verify.status}: ${verify.error_code}: ${verify.error_message}`);
    show(`verify: ${(verify.result as { chunksChecked: number }).chunksChecked} chunks re-read, all intact\n`);

    step(9, 'Stopping the agent and the hub (SIGTERM)');
    await procs[1]!.kill('SIGTERM');
    const t1 = Date.now();
    const exit = await hub.kill('SIGTERM');
    if (exit.code !== 0) throw new Error(`the hub exited with ${exit.code ?? exit.signal}`);
    show(`hub stopped cleanly in ${Date.now() - t1} ms\n`);
    process.stdout.write(`\nDemo complete (${qemu ? 'qemu' : 'file'} driver).\n`);
  } finally {
    // SIGTERM first: the hub stops its embedded PostgreSQL only on a graceful stop.
    const grace = (p: Proc) => new Promise((r) => setTimeout(r, 12_000)).then(() => p.kill('SIGKILL'));
    await Promise.all(procs.map((p) => Promise.race([p.kill('SIGTERM'), grace(p)])));
    await qsd?.destroy();
    await rm(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
