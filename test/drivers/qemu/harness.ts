import { randomBytes } from 'node:crypto';
import type { Extent, TargetSpec } from '../../../agent/drivers/driver.js';
import { QemuDriver } from '../../../agent/drivers/qemu/qemu-driver.js';
import { StorageDaemon, type DaemonOptions } from '../../support/qemu.js';

/** A daemon, a driver whose runtime files live beside it, and a target naming its disks. */
export interface Rig {
  qsd: StorageDaemon;
  driver: QemuDriver;
  target: TargetSpec;
  logs: { level: string; message: string }[];
  log: (level: 'info' | 'warn', message: string) => void;
}

const rigs: Rig[] = [];

/**
 * Disk i of the daemon is `disk<i>` in QEMU and `sd<a+i>` in the target. With live exports the
 * target uses the daemon's NBD server (nbdSocket); without, the driver starts its own.
 */
export async function rig(opts: DaemonOptions): Promise<Rig> {
  const qsd = await StorageDaemon.start(opts);
  const logs: Rig['logs'] = [];
  const r: Rig = {
    qsd,
    driver: new QemuDriver({ runtimeDir: qsd.runtimeDir }),
    target: {
      id: 'vm-test',
      driver: 'qemu',
      disks: opts.disks.map((d, i) => ({ name: `sd${String.fromCharCode(97 + i)}`, path: d.node })),
      options: { qmpSocket: qsd.driverQmpSocket, ...(opts.liveExports === false ? {} : { nbdSocket: qsd.nbdSocket }) },
    },
    logs,
    log: (level, message) => logs.push({ level, message }),
  };
  rigs.push(r);
  return r;
}

/** For afterEach: kills every daemon the test started. */
export async function destroyRigs(): Promise<void> {
  for (const r of rigs.splice(0)) await r.qsd.destroy();
}

/** Writes random data at pseudo-random places (and at the disk's two ends); returns the ranges. */
export async function randomWrites(qsd: StorageDaemon, node: string, size: number, count: number, seed: number): Promise<Extent[]> {
  let x = seed;
  const rand = (n: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  const ranges: Extent[] = [
    { offset: 0, length: 1 + rand(5000) },
    { offset: size - 777, length: 777 },
  ];
  for (let i = 0; i < count; i++) {
    const length = 1 + rand(300_000);
    ranges.push({ offset: rand(size - length), length });
  }
  for (const r of ranges) await qsd.write(node, r.offset, randomBytes(r.length));
  return ranges;
}
