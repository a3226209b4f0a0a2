/**
 * `npm run demo`: the newcomer's tour on the embedded defaults. A hub with its own embedded
 * PostgreSQL, a local agent enrolled with a join token, then a full backup and an incremental
 * one with live progress, and a restore whose SHA-256 is checked against the disk.
 *
 * The hub runs inside this process (the real hub code, started as `backhaul-hub serve` starts
 * it) because the operator's entry points, REST and backhaulctl, arrive with later issues; the
 * agent is the real `backhaul-agent` process. With qemu-storage-daemon installed the VM disk is
 * a qcow2 image in a real daemon and the qemu driver reads it; otherwise a raw image and the
 * file driver.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadHubConfig } from '../../hub/config.js';
import { Hub } from '../../hub/hub.js';
import { createJoinToken } from '../../hub/agents/join-tokens.js';
import { createLogger } from '../../shared/logger.js';
import { AGENT_BIN, eventually, freePort, startAgent, tempDir, type Proc } from '../support/processes.js';
import { MiB, StorageDaemon } from '../support/qemu.js';

const run = promisify(execFile);
const tty = process.stdout.isTTY;
const bold = (t: string) => (tty ? `\x1b[1m${t}\x1b[0m` : t);
const step = (n: number, text: string) => process.stdout.write(`\n${bold(`${n}. ${text}`)}\n`);
const show = (text: string) => process.stdout.write(text.replace(/^(?=.)/gm, '   '));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

const DISK = 256 * MiB;

interface Progress {
  bytesTotal: number;
  bytesDone: number;
  bytesRead: number;
  bytesTransferred: number;
  bytesReused: number;
  bytesZero: number;
  rateBytesPerSecond: number;
  etaSeconds: number;
}

async function hasQemu(): Promise<boolean> {
  try {
    await run('qemu-storage-daemon', ['--version']);
    await run('qemu-img', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** Polls the job until it ends, drawing its progress: one redrawn bar on a TTY, a line per change otherwise. */
async function follow(hub: Hub, jobId: string): Promise<{ status: string; progress: Progress | null; backupId: string | null; result: unknown; error: string | null }> {
  let lastLine = '';
  for (;;) {
    const rows = await hub.orm.em
      .fork()
      .getConnection()
      .execute<{ status: string; phase: string | null; progress: Progress | null; backup_id: string | null; result: unknown; error_code: string | null; error_message: string | null }[]>(
        'select status, phase, progress, backup_id, result, error_code, error_message from jobs where id = ?',
        [jobId],
      );
    const j = rows[0]!;
    const p = j.progress;
    const pct = p && p.bytesTotal > 0 ? Math.floor((100 * p.bytesDone) / p.bytesTotal) : 0;
    const terminal = ['succeeded', 'failed', 'cancelled'].includes(j.status);
    const shown = terminal && j.status === 'succeeded' ? 100 : Math.min(pct, 99);
    const bar = '#'.repeat(Math.round(shown / 5)).padEnd(20, '.');
    const line = `[${bar}] ${String(shown).padStart(3)}%  ${j.status}${j.phase && !terminal ? `/${j.phase}` : ''}  ${p ? `${mib(p.bytesDone)} of ${mib(p.bytesTotal)}, ${mib(p.rateBytesPerSecond)}/s` : ''}`;
    if (line !== lastLine) {
      process.stdout.write(tty ? `\r   ${line.padEnd(90)}` : `   ${line}\n`);
      lastLine = line;
    }
    if (terminal) {
      if (tty) process.stdout.write('\n');
      return { status: j.status, progress: p, backupId: j.backup_id, result: j.result, error: j.error_code ? `${j.error_code}: ${j.error_message}` : null };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function main(): Promise<void> {
  const root = await tempDir('backhaul-demo');
  await chmod(root, 0o711);
  const port = await freePort();
  const procs: Proc[] = [];
  let hub: Hub | null = null;
  let qsd: StorageDaemon | null = null;
  try {
    const qemu = await hasQemu();
    step(1, `Starting the hub on 127.0.0.1:${port} with an embedded PostgreSQL in ${join(root, 'hub')}`);
    // The embedded defaults: no DATABASE_URL, whatever the caller's environment says.
    const env: NodeJS.ProcessEnv = { ...process.env, BACKHAUL_HUB_LISTEN: `127.0.0.1:${port}`, BACKHAUL_HUB_HTTP_LISTEN: '127.0.0.1:0', BACKHAUL_HUB_DATA_DIR: join(root, 'hub') };
    delete env.DATABASE_URL;
    const t0 = Date.now();
    hub = await Hub.start(loadHubConfig(undefined, env), createLogger('hub', 'warn'));
    show(`hub is up in ${Date.now() - t0} ms; CA fingerprint ${hub.ca.fingerprint}\n`);

    step(2, 'Enrolling a local agent with a single-use join token (it checks the CA fingerprint, sends a CSR)');
    const token = await createJoinToken(hub.orm.em.fork(), 600_000);
    const stateDir = join(root, 'agent');
    const enrolled = await run(process.execPath, [AGENT_BIN, 'enroll', '--hub', `127.0.0.1:${port}`, '--token', token.token, '--ca-sha256', hub.ca.fingerprint, '--name', 'demo-agent'], {
      env: { ...process.env, BACKHAUL_AGENT_STATE_DIR: stateDir, LOG_LEVEL: 'warn' },
    });
    show(enrolled.stdout);
    const agentId = /agent ([0-9a-f-]{36})/.exec(enrolled.stdout)![1]!;

    step(3, `Preparing a ${mib(DISK)} VM disk: ${qemu ? 'qcow2 in a qemu-storage-daemon, read by the qemu driver (QMP + NBD, dirty bitmaps)' : 'raw image read by the file driver (qemu-storage-daemon is not installed)'}`);
    const initial = Buffer.concat([randomBytes(96 * MiB), Buffer.alloc(DISK - 96 * MiB)]);
    let target: Record<string, unknown>;
    let content: () => Promise<Buffer>;
    let change: (offset: number, data: Buffer) => Promise<void>;
    if (qemu) {
      qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: DISK }] });
      await qsd.write('disk0', 0, initial.subarray(0, 96 * MiB));
      target = { id: 'demo-vm', name: 'demo vm', driver: 'qemu', disks: [{ name: 'sda', path: 'disk0' }], options: { qmpSocket: qsd.driverQmpSocket, nbdSocket: qsd.nbdSocket } };
      content = () => qsd!.content('disk0');
      change = (o, d) => qsd!.write('disk0', o, d);
    } else {
      const image = join(root, 'demo-vm.raw');
      await writeFile(image, initial);
      target = { id: 'demo-vm', name: 'demo vm', driver: 'file', disks: [{ name: 'sda', path: image }] };
      content = () => readFile(image);
      change = async (o, d) => {
        const b = await readFile(image);
        d.copy(b, o);
        await writeFile(image, b);
      };
    }
    show(`driver: ${qemu ? 'qemu' : 'file'}; 96 MiB of data, the rest zeros\n`);

    step(4, 'Starting the agent: one mTLS stream to the hub, Hello with its inventory');
    const agent = startAgent(stateDir, { BACKHAUL_AGENT_TARGETS: JSON.stringify([target]), LOG_LEVEL: 'warn' });
    procs.push(agent);
    await eventually(() => Promise.resolve(hub!.registry.connected(agentId)), 20_000, 'the agent to connect');
    show('agent online\n');

    step(5, 'Full backup');
    const fullStart = Date.now();
    const full = await follow(hub, (await hub.jobs.startBackup(agentId, 'demo-vm')).id);
    if (full.status !== 'succeeded') throw new Error(`the full backup ${full.status}: ${full.error}`);
    const atFull = await content();
    show(`${((Date.now() - fullStart) / 1000).toFixed(1)} s: read ${mib(full.progress!.bytesRead)}, sent ${mib(full.progress!.bytesTransferred)} new, ${mib(full.progress!.bytesZero)} zero skipped\n`);

    step(6, 'The VM writes 8 MiB in 4 places; incremental backup');
    for (const o of [5, 40, 90, 200]) await change(o * MiB, randomBytes(2 * MiB));
    const atIncr = await content();
    const incrStart = Date.now();
    const incr = await follow(hub, (await hub.jobs.startBackup(agentId, 'demo-vm')).id);
    if (incr.status !== 'succeeded') throw new Error(`the incremental backup ${incr.status}: ${incr.error}`);
    show(
      `${((Date.now() - incrStart) / 1000).toFixed(1)} s: read ${mib(incr.progress!.bytesRead)}${qemu ? ' (only the changed chunks, from the dirty bitmap)' : ' (the file driver reads everything)'}, ` +
        `sent ${mib(incr.progress!.bytesTransferred)} new, reused ${mib(incr.progress!.bytesReused)}\n`,
    );

    step(7, 'Restoring both backups to new raw images, and verifying the incremental in the repository');
    for (const [name, b, expected] of [
      ['full', full, atFull],
      ['incremental', incr, atIncr],
    ] as const) {
      const path = join(root, `restored-${name}.raw`);
      const r = await follow(hub, (await hub.jobs.startRestore(b.backupId!, agentId, [{ diskName: 'sda', path, format: 'raw', create: true }])).id);
      if (r.status !== 'succeeded') throw new Error(`the restore of the ${name} backup ${r.status}: ${r.error}`);
      const reported = (r.result as { disks: { sha256: string }[] }).disks[0]!.sha256;
      const actual = sha(await readFile(path));
      if (reported !== sha(expected) || actual !== reported) throw new Error(`restore of the ${name} backup does not match the disk at its backup`);
      show(`${name}: SHA-256 ${actual} equals the disk at that backup\n`);
    }
    const verify = await (await hub.maintenance.startVerify(incr.backupId!)).done;
    if (verify.status !== 'succeeded') throw new Error(`verify ${verify.status}: ${verify.errorMessage}`);
    show(`verify: ${(verify.result as { chunksChecked: number }).chunksChecked} chunks re-read, all intact\n`);

    step(8, 'Stopping the agent and the hub');
    await agent.kill('SIGTERM');
    const t1 = Date.now();
    await hub.stop();
    hub = null;
    show(`hub stopped cleanly in ${Date.now() - t1} ms\n`);
    process.stdout.write(`\nDemo complete (${qemu ? 'qemu' : 'file'} driver).\n`);
  } finally {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await hub?.stop();
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
