import { stat } from 'node:fs/promises';
import type { Target } from '../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../shared/logger.js';
import type { TargetConfig } from './config.js';

/** The configured targets, with each disk's current size. A disk that cannot be read is reported with size 0 and logged. */
export async function scanInventory(targets: TargetConfig[], log: Logger): Promise<Target[]> {
  return Promise.all(
    targets.map(async (t) => ({
      id: t.id,
      name: t.name,
      driver: t.driver,
      disks: await Promise.all(
        t.disks.map(async (d) => {
          // A qemu disk is a block node name, not a path; its size is known only to QEMU.
          if (t.driver !== 'file') return { name: d.name, path: d.path, sizeBytes: 0 };
          try {
            return { name: d.name, path: d.path, sizeBytes: (await stat(d.path)).size };
          } catch (err) {
            log.warn({ target: t.id, disk: d.name, err: (err as Error).message }, 'disk not readable');
            return { name: d.name, path: d.path, sizeBytes: 0 };
          }
        }),
      ),
    })),
  );
}
