import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DigestSet } from '../../hub/repository/index.js';

describe('DigestSet', () => {
  it('agrees with a Set of hex strings over 200k random digests, through many growths', () => {
    const set = new DigestSet();
    const reference = new Set<string>();
    const pool = randomBytes(32 * 150_000);
    for (let n = 0; n < 200_000; n++) {
      // Every fourth add repeats an earlier digest.
      const i = n % 4 === 3 ? Math.floor(Math.random() * Math.min(n + 1, 150_000)) : n % 150_000;
      const hex = pool.toString('hex', i * 32, i * 32 + 32);
      expect(set.add(pool, i * 32)).toBe(!reference.has(hex));
      reference.add(hex);
    }
    expect(set.size).toBe(reference.size);
    for (const hex of reference) expect(set.hasHex(hex)).toBe(true);
    for (let k = 0; k < 10_000; k++) expect(set.has(randomBytes(32))).toBe(false);
  });

  it('tells apart digests that share their first 96 bits, and holds the all-zero key', () => {
    const set = new DigestSet();
    const a = Buffer.alloc(32, 0xaa);
    const b = Buffer.from(a);
    b[15] ^= 1; // differs inside the 128-bit key
    const zero = Buffer.alloc(32);
    expect(set.add(a)).toBe(true);
    expect(set.has(b)).toBe(false);
    expect(set.add(b)).toBe(true);
    expect(set.has(zero)).toBe(false);
    expect(set.add(zero)).toBe(true);
    expect(set.add(zero)).toBe(false);
    expect(set.size).toBe(3);
  });
});
