import { constants } from 'node:fs';
import { copyFile, open, readFile, readdir, realpath, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { DriverError, type AllocationExtent, type Driver, type DiskView, type OpenOptions, type Snapshot, type TargetSpec } from '../driver.js';

/** Prefix of the point-in-time clones this driver makes; the job id follows it. */
const CLONE_PREFIX = '.backhaul-clone-';

/**
 * Raw images and block devices. A regular file is cloned with FICLONE (reflink) where the
 * file system offers it, which gives a crash-consistent view at one instant for all disks
 * of the target at no copy cost. Elsewhere the live file is read as it is, and the job log
 * says the view is not point-in-time. There is no change tracking: an incremental reads
 * everything and the pipeline uploads only the chunks whose digest the hub lacks.
 */
export class FileDriver implements Driver {
  readonly name = 'file';

  async open(target: TargetSpec, opts: OpenOptions): Promise<Snapshot> {
    const made: string[] = [];
    const handles: FileHandle[] = [];
    const release = async () => {
      await Promise.all(handles.splice(0).map((h) => h.close()));
      await Promise.all(made.splice(0).map((p) => rm(p, { force: true })));
    };
    try {
      // Clone every disk first, back to back, so the instants are as close as the host allows.
      const sources = await Promise.all(target.disks.map(async (d) => ({ disk: d, info: await describe(d.path) })));
      const views: DiskView[] = [];
      for (const { disk, info } of sources) {
        let path = info.path;
        if (info.kind === 'file') {
          const clone = join(info.dir, `${CLONE_PREFIX}${opts.jobId}-${disk.name}`);
          try {
            await copyFile(info.path, clone, constants.COPYFILE_FICLONE_FORCE);
            made.push(clone);
            path = clone;
          } catch (err) {
            opts.log?.('warn', `disk ${disk.name}: the file system cannot clone ${info.path} (${(err as NodeJS.ErrnoException).code ?? String(err)}); reading the live file, which is not point-in-time while the VM writes`);
          }
        } else {
          opts.log?.('warn', `disk ${disk.name}: block device ${info.path} is read live; use an LVM or storage snapshot for a point-in-time view`);
        }
        const fh = await open(path, 'r');
        handles.push(fh);
        const full = opts.baseBitmaps?.[disk.name] ? 'the file driver has no change tracking; reading everything and deduplicating by digest' : null;
        if (full) opts.log?.('info', `disk ${disk.name}: ${full}`);
        views.push(fileView(disk.name, info.size, fh, full));
      }
      return {
        disks: views,
        committed: async () => {},
        abandoned: async () => {},
        release,
      };
    } catch (err) {
      await release();
      if (err instanceof DriverError) throw err;
      throw new DriverError('SNAPSHOT_FAILED', `cannot open target ${target.id}: ${(err as Error).message}`);
    }
  }

  async cleanupLeftovers(target: TargetSpec, liveJobIds: ReadonlySet<string>): Promise<string[]> {
    const removed: string[] = [];
    const dirs = new Set<string>();
    for (const d of target.disks) {
      const info = await describe(d.path).catch(() => null);
      if (info?.kind === 'file') dirs.add(info.dir);
    }
    for (const dir of dirs) {
      for (const name of await readdir(dir)) {
        if (!name.startsWith(CLONE_PREFIX)) continue;
        const jobId = name.slice(CLONE_PREFIX.length, CLONE_PREFIX.length + 36);
        if (liveJobIds.has(jobId)) continue;
        await rm(join(dir, name), { force: true });
        removed.push(join(dir, name));
      }
    }
    return removed;
  }
}

interface SourceInfo {
  kind: 'file' | 'block';
  path: string;
  dir: string;
  size: number;
}

async function describe(path: string): Promise<SourceInfo> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw new DriverError('DISK_NOT_FOUND', `disk image ${path} does not exist`);
  }
  const st = await stat(real);
  if (st.isFile()) return { kind: 'file', path: real, dir: join(real, '..'), size: st.size };
  if (st.isBlockDevice()) return { kind: 'block', path: real, dir: '/dev', size: await blockDeviceSize(real) };
  throw new DriverError('DISK_NOT_FOUND', `${path} is neither a regular file nor a block device`);
}

/** stat() reports 0 for block devices; sysfs has the size in 512-byte sectors. */
async function blockDeviceSize(dev: string): Promise<number> {
  const sectors = Number((await readFile(join('/sys/class/block', basename(dev), 'size'), 'utf8')).trim());
  if (!Number.isFinite(sectors)) throw new DriverError('DISK_NOT_FOUND', `cannot read the size of block device ${dev}`);
  return sectors * 512;
}

function fileView(name: string, size: number, fh: FileHandle, fullReadReason: string | null): DiskView {
  return {
    name,
    sizeBytes: size,
    fullReadReason,
    nextBitmap: null,
    // Without SEEK_HOLE in Node, everything counts as data; the pipeline drops zero chunks.
    async *allocation(): AsyncIterable<AllocationExtent> {
      if (size > 0) yield { offset: 0, length: size, zero: false };
    },
    changed: () => null,
    async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
      const buf = into ?? Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new DriverError('READ_FAILED', `disk ${name}: short read at ${offset + done} of ${size}`);
        done += bytesRead;
      }
      return buf;
    },
  };
}
