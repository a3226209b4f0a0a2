import { DriverError } from '../driver.js';
import { QmpCommandError, type QmpClient } from './qmp-client.js';
import { tagOf } from './qemu-names.js';

/**
 * Typed QMP queries of QEMU's block graph, and the idempotent removal of a job's exports,
 * nodes and block jobs. Shared by release (one job) and cleanupLeftovers (dead jobs).
 */

/** A dirty bitmap as `query-named-block-nodes` reports it (QEMU 7.2). */
export interface DirtyBitmapInfo {
  name?: string;
  recording: boolean;
  persistent: boolean;
  /** In use by an operation (an NBD export, a backup job…): it cannot be changed or exported. */
  busy: boolean;
  granularity: number;
  count: number;
  /** Set when the image was not closed cleanly; QEMU refuses to use the bitmap. */
  inconsistent?: boolean;
}

export interface BlockNodeInfo {
  'node-name': string;
  drv: string;
  ro: boolean;
  image: { 'virtual-size': number; filename: string; 'cluster-size'?: number };
  'dirty-bitmaps'?: DirtyBitmapInfo[];
}

export interface BlockExportInfo {
  id: string;
  type: string;
  'node-name': string;
  'shutting-down': boolean;
}

export interface JobInfo {
  id: string;
  type: string;
  status: string;
  error?: string;
}

export const queryNodes = (qmp: QmpClient) => qmp.execute<BlockNodeInfo[]>('query-named-block-nodes', { flat: true });
export const queryExports = (qmp: QmpClient) => qmp.execute<BlockExportInfo[]>('query-block-exports');
export const queryJobs = (qmp: QmpClient) => qmp.execute<JobInfo[]>('query-jobs');

/** The exports, nodes and jobs QEMU holds whose names carry a driver tag. */
export interface TaggedObjects {
  exports: string[];
  nodes: string[];
  jobs: string[];
}

/** Objects named after `tag`, or after any driver tag when `tag` is omitted. */
export async function taggedObjects(qmp: QmpClient, tag?: string): Promise<TaggedObjects> {
  const mine = (name: string) => (tag === undefined ? tagOf(name) !== null : tagOf(name) === tag);
  const [exports, nodes, jobs] = await Promise.all([queryExports(qmp), queryNodes(qmp), queryJobs(qmp)]);
  return {
    exports: exports.map((e) => e.id).filter(mine),
    nodes: nodes.map((n) => n['node-name']).filter(mine),
    jobs: jobs.map((j) => j.id).filter(mine),
  };
}

/**
 * Removes every export, node and block job named after `tag`, parents before children:
 * exports (their clients are dropped), snapshot-access nodes, the backup jobs (which take their
 * copy-before-write filters with them), then the overlays (with their file nodes). Objects that
 * are already gone are skipped, so this tolerates a half-built setup and repeated calls.
 * Returns what it removed; throws DriverError CLEANUP_FAILED if anything remains.
 */
export async function removeTaggedObjects(qmp: QmpClient, tag: string): Promise<string[]> {
  const removed: string[] = [];
  const failures: string[] = [];
  const attempt = async (what: string, action: () => Promise<unknown>, stillThere: () => Promise<boolean>) => {
    try {
      await action();
      removed.push(what);
    } catch (err) {
      // Gone meanwhile (another client, or QEMU itself): the goal is met. Otherwise report it.
      if (err instanceof QmpCommandError && !(await stillThere())) return;
      failures.push(`${what}: ${(err as Error).message}`);
    }
  };

  let objs = await taggedObjects(qmp, tag);
  for (const id of objs.exports) {
    const exists = async () => (await queryExports(qmp)).some((e) => e.id === id);
    await attempt(`export ${id}`, async () => {
      await qmp.execute('block-export-del', { id, mode: 'hard' });
      // Deletion completes once the export's connections are gone.
      await until(async () => !(await exists()), `export ${id} to go away`);
    }, exists);
  }

  const nodeExists = (name: string) => async () => (await queryNodes(qmp)).some((n) => n['node-name'] === name);
  for (const name of objs.nodes.filter((n) => /-sa\d+$/.test(n))) {
    await attempt(`node ${name}`, () => qmp.execute('blockdev-del', { 'node-name': name }), nodeExists(name));
  }

  for (const id of objs.jobs) {
    const job = async () => (await queryJobs(qmp)).find((j) => j.id === id);
    await attempt(`block job ${id}`, async () => {
      const j = await job();
      if (j?.status === 'concluded') await qmp.execute('job-dismiss', { id });
      else if (j) await qmp.execute('block-job-cancel', { device: id, force: true });
      await until(async () => (await job()) === undefined, `block job ${id} to end`);
    }, async () => (await job()) !== undefined);
  }

  objs = await taggedObjects(qmp, tag);
  // Overlays first: deleting one takes its file node along. What remains after is retried as is.
  const order = [...objs.nodes.filter((n) => /-fl\d+$/.test(n)), ...objs.nodes.filter((n) => !/-fl\d+$/.test(n))];
  for (const name of order) {
    if (!(await nodeExists(name)())) continue;
    await attempt(`node ${name}`, () => qmp.execute('blockdev-del', { 'node-name': name }), nodeExists(name));
  }

  const left = await taggedObjects(qmp, tag);
  const remaining = [...left.exports.map((e) => `export ${e}`), ...left.nodes.map((n) => `node ${n}`), ...left.jobs.map((j) => `job ${j}`)];
  if (remaining.length > 0 || failures.length > 0) {
    throw new DriverError('CLEANUP_FAILED', `QEMU objects of bh-${tag} remain (${remaining.join(', ') || 'none'}); errors: ${failures.join('; ') || 'none'}`);
  }
  return removed;
}

/** Polls `done` every 10 ms until it holds; QEMU finishes export and job teardown asynchronously. */
export async function until(done: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > end) throw new DriverError('CLEANUP_FAILED', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function findBitmap(nodes: BlockNodeInfo[], node: string, name: string): DirtyBitmapInfo | undefined {
  return nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps']?.find((b) => b.name === name);
}
