/**
 * A restore's write-behind flush, on real files: fdatasync runs after enough bytes, never two at
 * once, and a flush the kernel refuses fails the restore with WRITE_FAILED. The calls are counted
 * through a wrapper that forwards each one to the real FileHandle.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DestinationFlush } from '../../agent/jobs/destination-flush.js';
import { RestoreError } from '../../agent/jobs/restore-error.js';
import { tempDir } from '../support/processes.js';

const MiB = 1024 * 1024;
const handles: FileHandle[] = [];
afterEach(async () => {
  for (const fh of handles.splice(0)) await fh.close();
});

/** The real handle, with its datasync and sync calls counted. */
function counted(fh: FileHandle) {
  const calls = { datasync: 0, sync: 0 };
  const wrapped = new Proxy(fh, {
    get(target, key) {
      if (key === 'datasync' || key === 'sync') {
        return () => {
          calls[key] += 1;
          return target[key]();
        };
      }
      const v = Reflect.get(target, key, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { fh: wrapped, calls };
}

describe('DestinationFlush', () => {
  it('flushes after every threshold of written bytes, one flush at a time, and syncs at the end', async () => {
    const fh = await open(join(await tempDir('bh-flush'), 'disk.raw'), 'w+');
    handles.push(fh);
    const { fh: spy, calls } = counted(fh);
    const flush = new DestinationFlush(spy, MiB);
    await fh.write(Buffer.alloc(MiB, 1), 0, MiB, 0);
    flush.wrote(MiB / 2);
    expect(calls.datasync).toBe(0);
    flush.wrote(MiB / 2);
    expect(calls.datasync).toBe(1);
    // While that flush runs, more bytes wait for the next one instead of starting a second.
    flush.wrote(2 * MiB);
    expect(calls.datasync).toBe(1);
    await flush.settle();
    flush.wrote(1);
    expect(calls.datasync).toBe(2);
    await flush.finish();
    expect(calls).toEqual({ datasync: 2, sync: 1 });
  });

  it('fails finish with WRITE_FAILED when a flush in the background was refused', async () => {
    // fdatasync on /dev/null is refused with EINVAL: a real refusal by the kernel.
    const fh = await open('/dev/null', 'r+');
    handles.push(fh);
    const flush = new DestinationFlush(fh, 1);
    flush.wrote(1);
    const err = await flush.finish().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RestoreError);
    expect((err as RestoreError).code).toBe('WRITE_FAILED');
    expect((err as RestoreError).message).toBe('flushing the destination failed: EINVAL: invalid argument, fdatasync');
  });
});
