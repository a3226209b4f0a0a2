import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { enrollAgent, freePort, startAgent, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { HUB_BIN, hubEnv } from '../support/processes.js';

const run = promisify(execFile);
const procs: Proc[] = [];

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGTERM')));
});

describe('hub without DATABASE_URL', () => {
  it('runs an embedded PostgreSQL in its data directory, which the CLI reuses, and stops it on SIGTERM', async () => {
    const opts: HubProcOptions = { port: await freePort(), dataDir: await tempDir('bh-embedded') };
    const hub = await startHub(opts);
    procs.push(hub);
    expect(hub.lines.find((l) => l.msg === 'hub started')!.embedded_db).toBe(true);
    expect(existsSync(join(opts.dataDir, 'postgres', 'PG_VERSION'))).toBe(true);

    const stateDir = await tempDir('bh-agent');
    const agentId = await enrollAgent(opts, stateDir, 'embedded');
    const agent = startAgent(stateDir);
    procs.push(agent);
    await agent.waitForMsg('connected to hub');
    const { stdout } = await run(process.execPath, [HUB_BIN, 'agents', '--json'], { env: hubEnv(opts) });
    expect(JSON.parse(stdout)).toMatchObject([{ id: agentId, name: 'embedded', status: 'online', connected_hub: expect.any(String) }]);

    const exit = await hub.kill('SIGTERM');
    expect(exit.code).toBe(0);
    expect(existsSync(join(opts.dataDir, 'postgres', 'postmaster.pid'))).toBe(false);

    // State survives: a new hub on the same directory knows the agent, which reconnects.
    const again = await startHub(opts);
    procs.push(again);
    await again.waitForMsg('agent connected', 20_000, (l) => l.agent_id === agentId);
  });
});
