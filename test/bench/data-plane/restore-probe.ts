/**
 * A diagnostic, not part of `npm run bench`: the bench's rig (real hub and agent processes, the
 * qemu driver on the bench's image), one full backup, then N restores of it, each with both
 * processes' CPU and peak RSS and, when run with BENCH_DP_NODE_ARGS=--trace-gc, the number of
 * full (mark-compact) collections of the hub's main thread during it.
 *
 *   BENCH_DP_NODE_ARGS=--trace-gc node dist/test/bench/data-plane/restore-probe.js [restores=3]
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestDatabase } from '../../support/database.js';
import { tempDir } from '../../support/processes.js';
import type { ProcUsage } from './system.js';
import { BackhaulRig, makeRunDirs } from './backhaul-rig.js';
import { MiB, writeRawImage } from './image.js';

const restores = Number(process.argv[2] ?? 3);
const root = await tempDir('bh-restore-probe');
const dirs = await makeRunDirs(root);
const raw = join(dirs.image, 'vm.raw');
await writeRawImage(raw, { randomBytes: 1024 * MiB, zeroBytes: 1024 * MiB });
const rig = new BackhaulRig('qemu', dirs, (m) => process.stderr.write(`${m}\n`));
const db = await createTestDatabase('bh_restore_probe');
/** --trace-gc lines of the hub's main isolate (its workers' isolates have other addresses) for mark-compacts. */
const hubFullGcs = async (): Promise<number> => {
  const lines = (await readFile(join(dirs.hubData, 'hub.log'), 'utf8')).split('\n').filter((l) => l.includes('Mark-Compact') && !l.includes('(reduce)'));
  const main = lines[0]?.match(/^\[\d+:(0x[0-9a-f]+)\]/)?.[1];
  return lines.filter((l) => main !== undefined && l.includes(main)).length;
};
const tracing = (process.env.BENCH_DP_NODE_ARGS ?? '').includes('--trace-gc');
const gcNote = async (since: number) => (tracing ? `hub full GCs ${(await hubFullGcs()) - since}` : 'hub full GCs not counted (set BENCH_DP_NODE_ARGS=--trace-gc)');
const usage = (u: ProcUsage) => `CPU ${u.cpuSeconds.toFixed(1)} s, peak ${(u.peakRss / MiB).toFixed(0)} MiB`;
try {
  await rig.startStorage(raw);
  await rig.start(db.url, raw);
  let gcs = await hubFullGcs();
  const full = await rig.backup();
  console.log(`full    ${full.seconds.toFixed(2)} s; agent ${usage(full.agent)}; hub ${usage(full.hub)}; ${await gcNote(gcs)}`);
  for (let k = 0; k < restores; k++) {
    const out = join(dirs.restore, `restore-${k}.raw`);
    gcs = await hubFullGcs();
    const r = await rig.restore(full.row.backup_id!, out);
    console.log(`restore ${r.seconds.toFixed(2)} s; agent ${usage(r.agent)}; hub ${usage(r.hub)}; ${await gcNote(gcs)}`);
    await rm(out);
  }
} finally {
  await rig.stop();
  await db.drop();
  await rm(root, { recursive: true, force: true });
}
