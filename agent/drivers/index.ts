import { FileDriver } from './file/file-driver.js';
import type { Driver } from './driver.js';
import { QemuDriver } from './qemu/qemu-driver.js';

/** The drivers this build can run, by the name targets use. */
export function createDrivers(opts: { runtimeDir?: string } = {}): Map<string, Driver> {
  const drivers: Driver[] = [new FileDriver(), new QemuDriver(opts.runtimeDir ? { runtimeDir: opts.runtimeDir } : {})];
  return new Map(drivers.map((d) => [d.name, d]));
}
