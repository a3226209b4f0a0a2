/**
 * A set of chunk digests for the GC mark phase and verify's dedup, sized for tens of millions.
 *
 * Why not Set<string>: a 64-char hex key costs ~120 bytes with the Set's entry, ~1.2 GB for 10 M
 * chunks (40 TiB of unique data). This is an open-addressing table of the digests' first 128 bits
 * in one Uint32Array (16 bytes a slot, power-of-two slots, load 0.375–0.75: 21–43 bytes a digest,
 * 268 MB for 10 M).
 *
 * Keying on 128 of 256 bits: two distinct digests share a key with probability about
 * n² / 2^129 (≈ 10^-25 for n = 10^8), so the set is exact in practice. Even then a false "present"
 * can only make GC keep a dead chunk or verify skip a duplicate, never delete a live one.
 * SHA-256 output is uniform, so the first 32-bit word is used directly as the hash.
 */
export class DigestSet {
  private table: Uint32Array;
  private mask: number;
  private count = 0;
  /** The all-zero key is the empty-slot sentinel, so it is kept aside. */
  private hasZeroKey = false;

  constructor(expected = 1024) {
    let slots = 1024;
    while (slots * 0.75 < expected) slots *= 2;
    this.table = new Uint32Array(slots * 4);
    this.mask = slots - 1;
  }

  get size(): number {
    return this.count;
  }

  /** Adds the 32-byte digest at `offset` in `buf`; returns true if it was not in the set yet. */
  add(buf: Uint8Array, offset = 0): boolean {
    const k0 = readWord(buf, offset);
    const k1 = readWord(buf, offset + 4);
    const k2 = readWord(buf, offset + 8);
    const k3 = readWord(buf, offset + 12);
    if ((k0 | k1 | k2 | k3) === 0) {
      if (this.hasZeroKey) return false;
      this.hasZeroKey = true;
      this.count++;
      return true;
    }
    if ((this.count + 1) > (this.mask + 1) * 0.75) this.grow();
    const slot = this.find(k0, k1, k2, k3);
    const t = this.table;
    const i = slot * 4;
    if ((t[i] | t[i + 1] | t[i + 2] | t[i + 3]) !== 0) return false;
    t[i] = k0;
    t[i + 1] = k1;
    t[i + 2] = k2;
    t[i + 3] = k3;
    this.count++;
    return true;
  }

  has(buf: Uint8Array, offset = 0): boolean {
    const k0 = readWord(buf, offset);
    const k1 = readWord(buf, offset + 4);
    const k2 = readWord(buf, offset + 8);
    const k3 = readWord(buf, offset + 12);
    if ((k0 | k1 | k2 | k3) === 0) return this.hasZeroKey;
    const i = this.find(k0, k1, k2, k3) * 4;
    const t = this.table;
    return (t[i] | t[i + 1] | t[i + 2] | t[i + 3]) !== 0;
  }

  hasHex(digest: string): boolean {
    return this.has(Buffer.from(digest, 'hex'));
  }

  /** The slot holding the key, or the empty slot where it would go (linear probing). */
  private find(k0: number, k1: number, k2: number, k3: number): number {
    const t = this.table;
    let slot = k0 & this.mask;
    for (;;) {
      const i = slot * 4;
      const a = t[i];
      const b = t[i + 1];
      const c = t[i + 2];
      const d = t[i + 3];
      if ((a | b | c | d) === 0) return slot;
      if (a === k0 && b === k1 && c === k2 && d === k3) return slot;
      slot = (slot + 1) & this.mask;
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.mask = old.length / 4 * 2 - 1;
    for (let i = 0; i < old.length; i += 4) {
      const k0 = old[i];
      if ((k0 | old[i + 1] | old[i + 2] | old[i + 3]) === 0) continue;
      const j = this.find(k0, old[i + 1], old[i + 2], old[i + 3]) * 4;
      this.table[j] = k0;
      this.table[j + 1] = old[i + 1];
      this.table[j + 2] = old[i + 2];
      this.table[j + 3] = old[i + 3];
    }
  }
}

function readWord(buf: Uint8Array, at: number): number {
  // Unsigned 32-bit big-endian; `>>> 0` keeps it a positive small integer for fast compares.
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
}
