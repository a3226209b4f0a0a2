/**
 * `flows run --wait` and `executions watch` on real backups: what an operator sees while they
 * run (progress rising, line by line when not on a terminal), how they end (exit 0, 2, 1), that
 * a watch attached mid-run starts from the current state, and that Ctrl-C detaches without
 * cancelling.
 */
import { rm, unlink } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, tempDir } from '../support/processes.js';
import { fileTarget, MiB, rawImage, Stack } from '../lifecycle/stack.js';
import { Ctl, type Running } from './cli-harness.js';

let stack: Stack;
let ctl: Ctl;
let dir: string;
let slowTarget: string;
let goodTarget: string;
let goneTarget: string;

/** The percents the plain output showed for the job of this target, in order. */
function percents(r: Running, target: string): number[] {
  const re = new RegExp(`^\\d\\d:\\d\\d:\\d\\d job [0-9a-f]{8} ${target}: \\S+(?: \\(stalled\\))?  (\\d+)%`);
  return r.lines.map((l) => re.exec(l.text)).filter((m) => m !== null).map((m) => Number(m[1]));
}

beforeAll(async () => {
  stack = await Stack.start();
  ctl = await Ctl.for(stack);
  dir = await tempDir('bh-ctl-live');
  // 96 MiB read at 24 MiB/s: about four seconds of transfer to watch.
  const slow = await stack.addAgent([fileTarget('big-vm', await rawImage(dir, 'big-vm', 128, 96))], { BACKHAUL_AGENT_READ_LIMIT_BPS: String(24 * MiB) }, 'slow');
  slowTarget = (await stack.targetsOf(slow.id)).get('big-vm')!;
  const gonePath = await rawImage(dir, 'gone-vm', 4);
  const fast = await stack.addAgent([fileTarget('small-vm', await rawImage(dir, 'small-vm', 4, 2)), fileTarget('gone-vm', gonePath)], {}, 'fast');
  const t = await stack.targetsOf(fast.id);
  goodTarget = t.get('small-vm')!;
  goneTarget = t.get('gone-vm')!;
  // The agent reported the image; deleting it now makes every backup of it fail.
  await unlink(gonePath);
  await stack.createFlow('slow-flow', [slowTarget]);
  await stack.createFlow('failing-flow', [goneTarget]);
  await stack.createFlow('mixed-flow', [goodTarget, goneTarget]);
});

afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('flows run --wait', () => {
  it('prints one line per change with progress rising to 100, and exits 0 once the backup succeeded', async () => {
    const run = ctl.start(['flows', 'run', 'slow-flow', '--wait']);
    const code = await run.exited;
    expect(code, run.stderr).toBe(0);
    const seen = percents(run, 'big-vm');
    expect(seen.length).toBeGreaterThanOrEqual(4);
    // A line per change of state or percent: the percent may repeat across phases, never drop.
    for (let i = 1; i < seen.length; i++) expect(seen[i], `progress went back: ${seen.join(' ')}`).toBeGreaterThanOrEqual(seen[i - 1]!);
    expect(new Set(seen.filter((p) => p > 0 && p < 100)).size, `live progress: ${seen.join(' ')}`).toBeGreaterThanOrEqual(2);
    expect(seen.at(-1)).toBe(100);
    // The lines came over the run, not all at the end.
    expect(run.lines.at(-1)!.at - run.lines[0]!.at).toBeGreaterThan(2000);
    expect(run.stdout).toMatch(/execution [0-9a-f-]{36} succeeded in \d+s: 1 succeeded, 0 failed, 0 cancelled/);
  });

  it('exits 1 when the target fails, naming the job and its error', async () => {
    const run = ctl.start(['flows', 'run', 'failing-flow', '--wait']);
    expect(await run.exited, run.stderr).toBe(1);
    expect(run.stdout).toMatch(/execution [0-9a-f-]{36} failed in \d+s: 0 succeeded, 1 failed, 0 cancelled/);
    expect(run.stdout).toMatch(/\n  gone-vm: failed [A-Z_]+: /);
  });

  it('exits 2 on a mixed flow, and --json prints the final execution as REST shows it', async () => {
    const r = await ctl.run(['flows', 'run', 'mixed-flow', '--wait', '--json']);
    expect(r.code, r.stderr).toBe(2);
    const e = JSON.parse(r.stdout);
    expect(e).toMatchObject({ status: 'partial', job_counts: { total: 2, succeeded: 1, failed: 1 } });
    expect(e).toEqual(await stack.execution(e.id));
  });
});

describe('executions watch', () => {
  it('attached mid-run, starts from the current progress and follows to the end; --json gives one REST view per change', async () => {
    const { id } = await stack.runFlow((await stack.api('GET', '/api/v1/flows')).body.items.find((f: { name: string }) => f.name === 'slow-flow').id, 1);
    const before = await stack.jobWhere(id, (j) => j.percent >= 20, 30_000, 'transfer under way');
    const watch = ctl.start(['executions', 'watch', id]);
    const ndjson = ctl.start(['executions', 'watch', id, '--json']);
    expect(await watch.exited, watch.stderr).toBe(0);
    expect(await ndjson.exited, ndjson.stderr).toBe(0);

    expect(watch.lines[0]!.text).toMatch(new RegExp(`execution ${id} \\(flow slow-flow\\): running \\d+%`));
    const seen = percents(watch, 'big-vm');
    expect(seen[0], 'first line shows where the job already was').toBeGreaterThanOrEqual(before.percent);
    expect(seen.at(-1)).toBe(100);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThanOrEqual(seen[i - 1]!);

    const views = ndjson.lines.map((l) => JSON.parse(l.text));
    expect(views.length).toBeGreaterThanOrEqual(2);
    expect(views[0].status).toBe('running');
    expect(views.at(-1)).toEqual(await stack.execution(id));
  });

  it('Ctrl-C detaches, says how to cancel, and leaves the execution running', async () => {
    const { id } = await stack.runFlow((await stack.api('GET', '/api/v1/flows')).body.items.find((f: { name: string }) => f.name === 'slow-flow').id, 1);
    const watch = ctl.start(['executions', 'watch', id]);
    await eventually(async () => watch.lines.length > 0, 10_000, 'first watch line');
    watch.child.kill('SIGINT');
    expect(await watch.exited).toBe(130);
    expect(watch.stderr).toContain(`Detached; execution ${id} keeps running.`);
    expect(watch.stderr).toContain(`backhaulctl executions cancel ${id}`);
    expect((await stack.execution(id)).status).toBe('running');
    expect((await stack.finish(id)).status).toBe('succeeded');
  });

  it('an unknown execution is exit 6 with one sentence', async () => {
    const r = await ctl.run(['executions', 'watch', '0e2f5a3c-1d4b-4c6e-9f70-123456789abc']);
    expect(r.code).toBe(6);
    expect(r.stderr).toBe('backhaulctl: no execution 0e2f5a3c-1d4b-4c6e-9f70-123456789abc\n');
  });
});
