/**
 * A diagnostic, not part of `npm run bench`: the bench's rig (real hub and agent processes, the
 * qemu driver on the bench's image), one full backup, then N incrementals, each after the bench's
 * rewrite (64 MiB in 16 places, new random data each time), with the page cache dropped before
 * each. One bench run gives a single incremental, too few to compare two versions of the code
 * on this noisy machine; this gives N of them on the same machine state.
 *
 *   node dist/test/bench/data-plane/incremental-probe.js [incrementals=8] [gapSeconds=0]
 *
 * gapSeconds waits between incrementals, e.g. longer than the worker threads' idle timeouts so
 * that each incremental starts them again, as the bench's does after the peers' runs.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestDatabase } from '../../support/database.js';
import { tempDir } from '../../support/processes.js';
import { BackhaulRig, makeRunDirs } from './backhaul-rig.js';
import { MiB, planRewrites, writeRawImage } from './image.js';

const incrementals = Number(process.argv[2] ?? 8);
const gapMs = Number(process.argv[3] ?? 0) * 1000;
const spec = { randomBytes: 1024 * MiB, zeroBytes: 1024 * MiB };
const root = await tempDir('bh-incremental-probe');
const dirs = await makeRunDirs(root);
const raw = join(dirs.image, 'vm.raw');
await writeRawImage(raw, spec);
const rig = new BackhaulRig('qemu', dirs, (m) => process.stderr.write(`${m}\n`));
const db = await createTestDatabase('bh_incremental_probe');
try {
  await rig.startStorage(raw);
  await rig.start(db.url, raw);
  const full = await rig.backup();
  console.log(`full ${full.seconds.toFixed(2)} s`);
  const times: number[] = [];
  for (let k = 0; k < incrementals; k++) {
    await new Promise((r) => setTimeout(r, gapMs));
    await rig.rewriteQcow2(planRewrites(spec.randomBytes + spec.zeroBytes, 16, 4 * MiB));
    const m = await rig.backup();
    const read = (m.row.progress?.bytesRead ?? 0) / MiB;
    times.push(m.seconds);
    console.log(`incremental ${k + 1}: ${m.seconds.toFixed(3)} s, read ${read.toFixed(0)} MiB; agent CPU ${m.agent.cpuSeconds.toFixed(2)} s, hub CPU ${m.hub.cpuSeconds.toFixed(2)} s`);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(`incrementals: median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(3)} s, min ${sorted[0]!.toFixed(3)} s, max ${sorted.at(-1)!.toFixed(3)} s`);
} finally {
  await rig.stop();
  await db.drop();
  await rm(root, { recursive: true, force: true });
}
