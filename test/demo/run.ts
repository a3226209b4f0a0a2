/**
 * `npm run demo`: the newcomer's tour on the embedded defaults. It starts a hub with its own
 * PostgreSQL, creates a join token, enrolls a local agent, shows it online, stops it and
 * shows it offline, then stops the hub. Every step runs the real binaries.
 */
import { execFile } from 'node:child_process';
import { chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AGENT_BIN, HUB_BIN, freePort, hubEnv, startAgent, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';

const run = promisify(execFile);
const bold = (t: string) => (process.stdout.isTTY ? `\x1b[1m${t}\x1b[0m` : t);
const step = (n: number, text: string) => process.stdout.write(`\n${bold(`${n}. ${text}`)}\n`);
const show = (text: string) => process.stdout.write(text.replace(/^(?=.)/gm, '   '));

async function main(): Promise<void> {
  const root = await tempDir('backhaul-demo');
  await chmod(root, 0o711);
  const opts: HubProcOptions = { port: await freePort(), dataDir: join(root, 'hub') };
  const env = hubEnv(opts);
  const procs: Proc[] = [];
  try {
    step(1, `Starting the hub on 127.0.0.1:${opts.port} with an embedded PostgreSQL in ${opts.dataDir}`);
    const t0 = Date.now();
    const hub = await startHub(opts);
    procs.push(hub);
    const started = hub.lines.find((l) => l.msg === 'hub started')!;
    show(`hub ${String(started.hub_id)} is up in ${Date.now() - t0} ms (embedded database: ${String(started.embedded_db)})\nCA fingerprint: ${String(started.ca_sha256)}\n`);

    step(2, 'Creating a single-use join token: backhaul-hub token create');
    const tokenOut = (await run(process.execPath, [HUB_BIN, 'token', 'create', '--ttl', '10m', '--hub-address', `127.0.0.1:${opts.port}`], { env })).stdout;
    show(tokenOut);
    const enrollCmd = /backhaul-agent (enroll .*)$/m.exec(tokenOut)![1]!.split(' ');

    step(3, 'Enrolling a local agent: it checks the CA fingerprint, sends a CSR, stores its key (0600)');
    const stateDir = join(root, 'agent');
    show((await run(process.execPath, [AGENT_BIN, ...enrollCmd, '--name', 'demo-agent'], { env: { ...process.env, BACKHAUL_AGENT_STATE_DIR: stateDir, LOG_LEVEL: 'warn' } })).stdout);

    step(4, 'Starting the agent: one mTLS stream, Hello, heartbeats');
    const agent = startAgent(stateDir);
    procs.push(agent);
    const connected = await agent.waitForMsg('connected to hub');
    show(`agent connected (session epoch ${String(connected.epoch)}, heartbeat every ${String(connected.heartbeat_ms)} ms)\n\n`);
    show((await run(process.execPath, [HUB_BIN, 'agents'], { env })).stdout);

    step(5, 'Stopping the agent: the hub records it offline');
    await agent.kill('SIGTERM');
    await hub.waitForMsg('agent disconnected');
    show((await run(process.execPath, [HUB_BIN, 'agents'], { env })).stdout);

    step(6, 'Stopping the hub (SIGTERM): drain, close, stop PostgreSQL');
    const t1 = Date.now();
    const exit = await hub.kill('SIGTERM');
    if (exit.code !== 0) throw new Error(`hub exited with ${exit.code ?? exit.signal}`);
    show(`hub stopped cleanly in ${Date.now() - t1} ms\n`);
    process.stdout.write('\nDemo complete. Backups, incrementals and a verified restore join this tour as the data plane lands.\n');
  } finally {
    await Promise.all(procs.map((p) => p.kill('SIGKILL')));
    await rm(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
