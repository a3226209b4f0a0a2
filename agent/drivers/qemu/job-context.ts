import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DriverError, type TargetSpec } from '../driver.js';
import { QmpClient, QmpError } from './qmp-client.js';

/** Where and how the driver reaches one target's QEMU. */
export interface TargetContext {
  targetId: string;
  qmpSocket: string;
  /** An NBD server QEMU already runs (from its command line), or null to start one per job. */
  nbdSocket: string | null;
  /** This target's runtime directory: overlays, sockets and journals, named after jobs. */
  dir: string;
  qmpConnectTimeoutMs: number;
  qmpCommandTimeoutMs: number;
  nbdTimeoutMs: number;
}

export interface TargetContextDefaults {
  runtimeDir: string;
  qmpConnectTimeoutMs: number;
  qmpCommandTimeoutMs: number;
  nbdTimeoutMs: number;
}

/**
 * Reads the target options: `qmpSocket` (required), `nbdSocket` and `runtimeDir` (optional).
 * Each target gets its own subdirectory so that cleanup of one never touches another's files.
 */
export function targetContext(target: TargetSpec, d: TargetContextDefaults): TargetContext {
  const qmpSocket = target.options?.qmpSocket;
  if (!qmpSocket) throw new DriverError('TARGET_UNREACHABLE', `target ${target.id}: option qmpSocket (the QMP monitor's unix socket) is required`);
  const dirName = `t-${createHash('sha256').update(target.id).digest('hex').slice(0, 12)}`;
  return {
    targetId: target.id,
    qmpSocket,
    nbdSocket: target.options?.nbdSocket || null,
    dir: join(target.options?.runtimeDir || d.runtimeDir, 'backhaul-qemu', dirName),
    qmpConnectTimeoutMs: d.qmpConnectTimeoutMs,
    qmpCommandTimeoutMs: d.qmpCommandTimeoutMs,
    nbdTimeoutMs: d.nbdTimeoutMs,
  };
}

/**
 * Runs `fn` on a fresh QMP connection and closes it. The driver holds the monitor only while
 * it works: QEMU serves one client per monitor, and a backup can last hours.
 */
export async function withQmp<T>(ctx: TargetContext, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(ctx.qmpSocket, { connectTimeoutMs: ctx.qmpConnectTimeoutMs, commandTimeoutMs: ctx.qmpCommandTimeoutMs });
  } catch (err) {
    if (err instanceof QmpError) throw new DriverError('TARGET_UNREACHABLE', `target ${ctx.targetId}: ${err.message}`);
    throw err;
  }
  try {
    return await fn(qmp);
  } finally {
    await qmp.close();
  }
}
