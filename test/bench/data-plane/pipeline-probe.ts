/**
 * A diagnostic, not part of `npm run bench`: the agent's pipeline reading the bench's image
 * through the real qemu driver (qemu-storage-daemon, NBD) into a sink that stores nothing, so
 * the source, hashing and compression are timed without the network or the hub.
 *
 *   node dist/test/bench/data-plane/pipeline-probe.js [randomMiB=1024] [uploadMs=0]
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { createDrivers } from '../../../agent/drivers/index.js';
import { runBackup, type ChunkSink } from '../../../agent/pipeline/index.js';
import { StorageDaemon } from '../../support/qemu.js';
import { dropCaches } from './system.js';

const MiB = 1024 * 1024;

function qsdCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function main(): Promise<void> {
  const randomMiB = Number(process.argv[2] ?? 1024);
  const uploadMs = Number(process.argv[3] ?? 0);
  const qsd = await StorageDaemon.start({ disks: [{ node: 'disk0', sizeBytes: 2 * randomMiB * MiB }] });
  try {
    await qsd.stop();
    const raw = `${qsd.image('disk0')}.raw`;
    const fh = await open(raw, 'w');
    const piece = Buffer.allocUnsafe(4 * MiB);
    for (let i = 0; i < randomMiB / 4; i++) await fh.write(randomFillSync(piece));
    await fh.truncate(2 * randomMiB * MiB);
    await fh.close();
    await rm(qsd.image('disk0'));
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qsd.image('disk0')]);
    await rm(raw);
    await qsd.launch();
    const driver = createDrivers().get('qemu')!;
    const target = { id: 'probe', driver: 'qemu', disks: [{ name: 'sda', path: 'disk0' }], options: { qmpSocket: qsd.driverQmpSocket, nbdSocket: qsd.nbdSocket } };
    for (const run of [1, 2]) {
      dropCaches();
      const snap = await driver.open(target, { jobId: `00000000-0000-4000-8000-00000000000${run}` });
      let uploads = 0;
      const sink: ChunkSink = {
        missing: async (d) => [...d],
        upload: async () => {
          uploads++;
          if (uploadMs) await new Promise((r) => setTimeout(r, uploadMs));
        },
      };
      if (process.env.PROBE_READ_ONLY) {
        const view = snap.disks[0]!;
        const len = 8 * MiB;
        const bufs = [Buffer.allocUnsafe(len), Buffer.allocUnsafe(len)];
        let next = 0;
        const r0 = performance.now();
        await Promise.all(bufs.map(async (b) => { while (next < randomMiB * MiB) { const at = next; next += len; await view.read(at, len, b); } }));
        console.log(`read only: ${((performance.now() - r0) / 1000).toFixed(2)} s`);
        await snap.abandoned();
        continue;
      }
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      const q0 = qsdCpu(qsd.proc!.pid!);
      const res = await runBackup({ disks: snap.disks.map((view) => ({ view, parentDigests: null })), sink });
      const s = (performance.now() - t0) / 1000;
      await snap.abandoned();
      const busy = res.progress;
      const c = process.cpuUsage(c0);
      console.log(`  cpu: probe ${((c.user + c.system) / 1e6).toFixed(2)} s (user ${(c.user / 1e6).toFixed(2)}), qsd ${(qsdCpu(qsd.proc!.pid!) - q0).toFixed(2)} s`);
      console.log(`run ${run}: ${s.toFixed(2)} s, ${(randomMiB / s).toFixed(0)} MiB/s of data, ${uploads} uploads; ${JSON.stringify(busy.busy ?? {})}`);
    }
  } finally {
    await qsd.destroy();
  }
}

await main();
