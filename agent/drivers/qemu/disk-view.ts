import { DriverError, type AllocationExtent, type DiskView, type Extent } from '../driver.js';
import { NbdError, type NbdClient } from './nbd-client.js';
import { STATE_DIRTY, STATE_ZERO } from './nbd-protocol.js';

export const ALLOCATION_CONTEXT = 'base:allocation';
export const dirtyBitmapContext = (bitmap: string) => `qemu:dirty-bitmap:${bitmap}`;

/**
 * One disk's point-in-time view, read over NBD from its snapshot-access export: allocation from
 * `base:allocation`, changes from `qemu:dirty-bitmap:<base>`, data from NBD_CMD_READ.
 */
export class QemuDiskView implements DiskView {
  constructor(
    readonly name: string,
    readonly sizeBytes: number,
    readonly fullReadReason: string | null,
    readonly nextBitmap: string | null,
    private readonly nbd: NbdClient,
    /** The dirty-bitmap context of the base, or null when the disk is read in full. */
    private readonly dirtyContext: string | null,
    /** The backup job whose copy-before-write keeps the view frozen; named in read errors. */
    private readonly blockJob: string,
  ) {}

  async *allocation(): AsyncGenerator<AllocationExtent> {
    let run: AllocationExtent | null = null;
    try {
      for await (const e of this.nbd.extents(ALLOCATION_CONTEXT, 0, this.sizeBytes)) {
        const zero = (e.flags & STATE_ZERO) !== 0;
        // Holes that do not read as zeros are data to us; merge runs of the same kind.
        if (run && run.zero === zero) run.length += e.length;
        else {
          if (run) yield run;
          run = { offset: e.offset, length: e.length, zero };
        }
      }
    } catch (err) {
      throw this.readFailed('allocation', err);
    }
    if (run) yield run;
  }

  changed(): AsyncIterable<Extent> | null {
    const context = this.dirtyContext;
    if (context === null) return null;
    return async function* (this: QemuDiskView): AsyncGenerator<Extent> {
      try {
        for await (const e of this.nbd.extents(context, 0, this.sizeBytes)) {
          // extents() merges equal neighbours, so dirty runs are already maximal.
          if (e.flags & STATE_DIRTY) yield { offset: e.offset, length: e.length };
        }
      } catch (err) {
        throw this.readFailed('changed extents', err);
      }
    }.call(this);
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    try {
      return await this.nbd.read(offset, length, into);
    } catch (err) {
      throw this.readFailed(`read of ${length} bytes at ${offset}`, err);
    }
  }

  private readFailed(what: string, err: unknown): DriverError {
    const msg = err instanceof Error ? err.message : String(err);
    // snapshot-access answers ENOTSUP once its copy-before-write filter is gone, i.e. once the
    // backup job ended: the view is no longer frozen and must not be read.
    const hint = err instanceof NbdError && err.errno === 95 ? `; the point-in-time view is gone (did block job ${this.blockJob} end?)` : '';
    return new DriverError('READ_FAILED', `disk ${this.name}: ${what} failed: ${msg}${hint}`);
  }
}
