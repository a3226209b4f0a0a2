/**
 * `npm run bench -- cli`: how long `backhaulctl agents list` takes against a local hub, from
 * spawning the process to its exit (Node start, TLS to the gRPC port, token check, the query,
 * the table), against peers run interleaved on the same machine in the same run: a bare
 * `node -e 0` (the floor any Node CLI pays) and `curl` on the REST route that answers the same.
 *
 * Knobs (environment): BENCH_CLI_RUNS (30).
 */
import { execFile, spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase } from '../support/database.js';
import { enrollAgent, freePort, HUB_BIN, hubEnv, ROOT, startAgent, tempDir, type HubProcOptions } from '../support/processes.js';
import { BenchHub } from './hub-process.js';
import { markdownTable, ms, ratio, verdict, type ResultRow } from './results-table.js';

const run = promisify(execFile);
const RUNS = Number(process.env.BENCH_CLI_RUNS ?? 30);
const TARGET_MS = 300;
const CTL_BIN = join(ROOT, 'dist/hub/cli/main.js');

/** Wall time of one command, spawn to exit; throws if it fails. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const took = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.toString()}`);
  return took;
}

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

export async function runCliStartup(): Promise<void> {
  const db = await createTestDatabase('bh_bench_cli');
  const dataDir = await tempDir('bh-bench-cli');
  const opts: HubProcOptions = { port: await freePort(), dataDir, databaseUrl: db.url };
  const hub = await BenchHub.start({ ...opts, logPath: join(dataDir, 'hub.log') });
  const agentDir = await tempDir('bh-bench-cli-agent');
  let agent: ReturnType<typeof startAgent> | null = null;
  try {
    const env = hubEnv(opts);
    const token = (JSON.parse((await run(process.execPath, [HUB_BIN, 'api-token', 'create', '--name', 'bench', '--role', 'viewer', '--json'], { env })).stdout) as { token: string }).token;
    const caFile = join(dataDir, 'ca.pem');
    await writeFile(caFile, (await run(process.execPath, [HUB_BIN, 'ca'], { env })).stdout);
    // One agent online, so the table has a row to print.
    await enrollAgent(opts, agentDir, 'bench-agent');
    agent = startAgent(agentDir, { BACKHAUL_AGENT_TARGETS: '[]', LOG_LEVEL: 'warn' }, 'agent');
    const httpPort = hub.lines().find((l) => l.msg === 'hub started')!.http_port as number;
    const ctlEnv = { ...process.env, BACKHAUL_HUB: `127.0.0.1:${opts.port}`, BACKHAUL_TOKEN: token, BACKHAUL_CA: caFile, XDG_CONFIG_HOME: dataDir };
    const curlArgs = ['-sf', '-o', '/dev/null', '-H', `Authorization: Bearer ${token}`, `http://127.0.0.1:${httpPort}/api/v1/agents`];
    const hasCurl = spawnSync('curl', ['--version']).status === 0;

    const samples = { ctl: [] as number[], node: [] as number[], curl: [] as number[] };
    // Warm the page cache and the hub's pool first; then interleave, so load on the shared machine hits all alike.
    for (let i = 0; i < 3; i++) timed(process.execPath, [CTL_BIN, 'agents', 'list'], ctlEnv);
    for (let i = 0; i < RUNS; i++) {
      samples.ctl.push(timed(process.execPath, [CTL_BIN, 'agents', 'list'], ctlEnv));
      samples.node.push(timed(process.execPath, ['-e', '0'], ctlEnv));
      if (hasCurl) samples.curl.push(timed('curl', curlArgs, ctlEnv));
    }
    const row = (k: 'p50' | 'p90', q: number, peer: 'node' | 'curl'): ResultRow => {
      const mine = quantile(samples.ctl, q);
      const theirs = samples[peer].length ? quantile(samples[peer], q) : NaN;
      return {
        measure: `backhaulctl agents list, ${k} (${RUNS} runs)`,
        backhaul: ms(mine),
        peer: Number.isNaN(theirs) ? 'curl not installed' : `${ms(theirs)} (${peer === 'node' ? 'node -e 0' : 'curl GET /api/v1/agents'})`,
        vsPeer: Number.isNaN(theirs) ? '' : ratio(mine, theirs),
        target: `< ${TARGET_MS} ms`,
        vsTarget: ratio(mine, TARGET_MS),
        verdict: verdict(mine < TARGET_MS),
      };
    };
    process.stdout.write(`\n${markdownTable([row('p50', 0.5, 'node'), row('p90', 0.9, 'node'), row('p50', 0.5, 'curl')])}\n\n`);
  } finally {
    await agent?.kill('SIGKILL');
    await hub.stop();
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
    await rm(agentDir, { recursive: true, force: true });
  }
}
