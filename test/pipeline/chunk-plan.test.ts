import { describe, expect, it } from 'vitest';
import { planChunks } from '../../agent/pipeline/chunk-plan.js';

const C = 4;
const kinds = (p: ReturnType<typeof planChunks>) => p.map((a) => (a.kind === 'reuse' ? `reuse:${a.digest}` : a.kind)).join(' ');

describe('planChunks', () => {
  it('reads every chunk touched by data and skips whole zero chunks on a full backup', () => {
    const plan = planChunks({
      sizeBytes: 18,
      chunkSize: C,
      allocation: [
        { offset: 0, length: 5, zero: false },
        { offset: 5, length: 7, zero: true },
        { offset: 12, length: 6, zero: false },
      ],
      changed: null,
      parentDigests: null,
    });
    // chunks: [0,4) data, [4,8) touched by data at 4, [8,12) zero, [12,16) data, [16,18) data (short last chunk)
    expect(kinds(plan)).toBe('read read zero read read');
  });

  it('reads only changed chunks on an incremental, reusing the parent digests of the rest', () => {
    const plan = planChunks({
      sizeBytes: 16,
      chunkSize: C,
      allocation: [{ offset: 0, length: 16, zero: false }],
      changed: [{ offset: 5, length: 4 }],
      parentDigests: ['a', 'b', 'c', 'd'],
    });
    expect(kinds(plan)).toBe('reuse:a read read reuse:d');
  });

  it('reads a chunk the parent had as zero but that now holds data, even if not marked changed', () => {
    const plan = planChunks({ sizeBytes: 8, chunkSize: C, allocation: [{ offset: 0, length: 8, zero: false }], changed: [], parentDigests: ['a', null] });
    expect(kinds(plan)).toBe('reuse:a read');
  });

  it('falls back to reading everything when the parent has another size (resized disk)', () => {
    const plan = planChunks({ sizeBytes: 12, chunkSize: C, allocation: [{ offset: 0, length: 12, zero: false }], changed: [], parentDigests: ['a', 'b'] });
    expect(kinds(plan)).toBe('read read read');
  });

  it('turns a now-zero chunk into zero, whatever the parent had', () => {
    const plan = planChunks({ sizeBytes: 8, chunkSize: C, allocation: [{ offset: 0, length: 4, zero: false }, { offset: 4, length: 4, zero: true }], changed: [{ offset: 4, length: 4 }], parentDigests: ['a', 'b'] });
    expect(kinds(plan)).toBe('reuse:a zero');
  });
});
