import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DirtyBitmapInfo } from '../../agent/drivers/qemu/block-graph.js';
import { NbdClient } from '../../agent/drivers/qemu/nbd-client.js';
import { QmpClient } from '../../agent/drivers/qemu/qmp-client.js';
import { tagOf } from '../../agent/drivers/qemu/qemu-names.js';

/**
 * A real qemu-storage-daemon for tests: qcow2 images in a temp directory, two QMP monitors
 * (one for the test, one for the driver: QEMU serves one client per monitor), and optionally an
 * NBD server with a writable export of each live disk that the test writes through.
 */

const run = promisify(execFile);
export const MiB = 1024 * 1024;

export interface DaemonDiskSpec {
  /** Block node name of the qcow2 format node. */
  node: string;
  sizeBytes: number;
  /** Image format (default qcow2); raw cannot store persistent bitmaps. */
  format?: 'qcow2' | 'raw';
  /** Written into the image with qemu-io before the daemon starts. */
  prefill?: { offset: number; length: number; pattern: number }[];
}

export interface DaemonOptions {
  disks: DaemonDiskSpec[];
  /** Start an NBD server with a writable export `live-<node>` per disk (default true). */
  liveExports?: boolean;
}

export class StorageDaemon {
  proc!: ChildProcess;
  private stderr = '';
  private testQmp: QmpClient | null = null;
  private live = new Map<string, NbdClient>();

  private constructor(
    readonly dir: string,
    readonly opts: DaemonOptions,
  ) {}

  get testQmpSocket() {
    return join(this.dir, 'test.qmp');
  }
  get driverQmpSocket() {
    return join(this.dir, 'driver.qmp');
  }
  get nbdSocket() {
    return join(this.dir, 'nbd.sock');
  }
  /** Where the driver under test keeps its runtime files. */
  get runtimeDir() {
    return join(this.dir, 'run');
  }
  image(node: string) {
    const disk = this.opts.disks.find((d) => d.node === node);
    return join(this.dir, `${node}.${disk?.format ?? 'qcow2'}`);
  }

  static async start(opts: DaemonOptions): Promise<StorageDaemon> {
    await requireQemuTools();
    const d = new StorageDaemon(await mkdtemp(join(tmpdir(), 'bh-qsd-')), opts);
    for (const disk of opts.disks) {
      const format = disk.format ?? 'qcow2';
      await run('qemu-img', ['create', '-q', '-f', format, d.image(disk.node), String(disk.sizeBytes)]);
      for (const w of disk.prefill ?? []) {
        await run('qemu-io', ['-f', format, '-c', `write -P ${w.pattern} ${w.offset} ${w.length}`, d.image(disk.node)]);
      }
    }
    await d.launch();
    return d;
  }

  /** Starts the daemon process on the images (again, after stop or kill). */
  async launch(): Promise<void> {
    const args: string[] = [];
    for (const disk of this.opts.disks) {
      args.push('--blockdev', `driver=file,node-name=${disk.node}-file,filename=${this.image(disk.node)}`);
      args.push('--blockdev', `driver=${disk.format ?? 'qcow2'},node-name=${disk.node},file=${disk.node}-file`);
    }
    args.push('--chardev', `socket,id=mon0,path=${this.testQmpSocket},server=on,wait=off`, '--monitor', 'chardev=mon0');
    args.push('--chardev', `socket,id=mon1,path=${this.driverQmpSocket},server=on,wait=off`, '--monitor', 'chardev=mon1');
    if (this.opts.liveExports !== false) {
      // --nbd-server must come before the exports that use it.
      args.push('--nbd-server', `addr.type=unix,addr.path=${this.nbdSocket}`);
      for (const disk of this.opts.disks) {
        args.push('--export', `type=nbd,id=live-${disk.node},node-name=${disk.node},name=live-${disk.node},writable=on`);
      }
    }
    this.stderr = '';
    this.proc = spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr!.setEncoding('utf8').on('data', (c: string) => (this.stderr += c));
    const end = Date.now() + 10_000;
    for (;;) {
      try {
        this.testQmp = await QmpClient.connect(this.testQmpSocket, { connectTimeoutMs: 2_000 });
        return;
      } catch (err) {
        if (this.proc.exitCode !== null || Date.now() > end) {
          throw new Error(`qemu-storage-daemon did not come up: ${(err as Error).message}; stderr: ${this.stderr}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /** The test's own QMP connection. */
  get qmp(): QmpClient {
    if (!this.testQmp) throw new Error('daemon not running');
    return this.testQmp;
  }

  /** A client of the writable live export of `node`. */
  async liveDisk(node: string): Promise<NbdClient> {
    let c = this.live.get(node);
    if (!c) {
      c = await NbdClient.connect({ address: { path: this.nbdSocket }, exportName: `live-${node}` });
      this.live.set(node, c);
    }
    return c;
  }

  async write(node: string, offset: number, data: Buffer): Promise<void> {
    const c = await this.liveDisk(node);
    await c.write(offset, data);
    await c.flush();
  }

  /** The live disk's whole content, read through its export. */
  async content(node: string): Promise<Buffer> {
    const c = await this.liveDisk(node);
    return c.read(0, c.size);
  }

  /** The named dirty bitmaps of a node (a running backup job adds unnamed ones of its own). */
  async bitmaps(node: string): Promise<DirtyBitmapInfo[]> {
    const nodes = await this.qmp.execute<{ 'node-name': string; 'dirty-bitmaps'?: DirtyBitmapInfo[] }[]>('query-named-block-nodes', { flat: true });
    return (nodes.find((n) => n['node-name'] === node)?.['dirty-bitmaps'] ?? []).filter((b) => b.name !== undefined);
  }

  /** Everything QEMU and the runtime directory hold that is named after `tag` (all tags if omitted). */
  async objectsOf(tag?: string): Promise<{ exports: string[]; nodes: string[]; jobs: string[]; bitmaps: string[]; files: string[] }> {
    const mine = (name: string) => (tag === undefined ? tagOf(name) !== null : tagOf(name) === tag);
    const exports = (await this.qmp.execute<{ id: string }[]>('query-block-exports')).map((e) => e.id).filter(mine);
    const nodeInfos = await this.qmp.execute<{ 'node-name': string; 'dirty-bitmaps'?: DirtyBitmapInfo[] }[]>('query-named-block-nodes', { flat: true });
    const nodes = nodeInfos.map((n) => n['node-name']).filter(mine);
    const bitmaps = nodeInfos.flatMap((n) => (n['dirty-bitmaps'] ?? []).map((b) => b.name ?? '').filter(mine));
    const jobs = (await this.qmp.execute<{ id: string }[]>('query-jobs')).map((j) => j.id).filter(mine);
    const files = await listTree(this.runtimeDir).then((fs) => fs.filter((f) => mine(f.split('/').pop()!)));
    return { exports, nodes, jobs, bitmaps, files };
  }

  /** Stops the daemon: SIGTERM closes the images cleanly (persistent bitmaps are written). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    for (const c of this.live.values()) await c.close();
    this.live.clear();
    await this.testQmp?.close();
    this.testQmp = null;
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      this.proc.kill(signal);
      await exited;
    }
  }

  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    await rm(this.dir, { recursive: true, force: true });
  }
}

let toolsChecked: Promise<void> | null = null;

/** Fails with the install command when the QEMU tools are missing, instead of a bare ENOENT. */
function requireQemuTools(): Promise<void> {
  toolsChecked ??= (async () => {
    for (const tool of ['qemu-storage-daemon', 'qemu-img', 'qemu-io']) {
      await run(tool, ['--version']).catch((err: Error) => {
        throw new Error(
          `${tool} is not usable (${err.message}); install it with: apt-get install -y --no-install-recommends qemu-system-common qemu-utils`,
        );
      });
    }
  })();
  return toolsChecked;
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw err;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await listTree(p)));
    else out.push(p);
  }
  return out;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Reads a whole view in 4 MiB pieces, as the pipeline would. */
export async function readAll(view: { sizeBytes: number; read(o: number, l: number): Promise<Buffer> }, piece = 4 * MiB): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < view.sizeBytes; at += piece) parts.push(await view.read(at, Math.min(piece, view.sizeBytes - at)));
  return Buffer.concat(parts);
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Merges ranges into sorted, non-overlapping, non-adjacent ones, each widened to `grain`. */
export function coverage(ranges: { offset: number; length: number }[], grain = 1): { offset: number; length: number }[] {
  const widened = ranges
    .map((r) => ({ start: Math.floor(r.offset / grain) * grain, end: Math.ceil((r.offset + r.length) / grain) * grain }))
    .sort((a, b) => a.start - b.start);
  const out: { offset: number; length: number }[] = [];
  let cur: { start: number; end: number } | null = null;
  for (const r of widened) {
    if (cur && r.start <= cur.end) cur.end = Math.max(cur.end, r.end);
    else {
      if (cur) out.push({ offset: cur.start, length: cur.end - cur.start });
      cur = { ...r };
    }
  }
  if (cur) out.push({ offset: cur.start, length: cur.end - cur.start });
  return out;
}
