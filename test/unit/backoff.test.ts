import { describe, expect, it } from 'vitest';
import { Backoff } from '../../shared/backoff.js';

describe('Backoff', () => {
  it('doubles its ceiling per attempt up to the cap', () => {
    const b = new Backoff(100, 1_000, () => 0.999999);
    const delays = Array.from({ length: 7 }, () => b.next());
    expect(delays).toEqual([99, 199, 399, 799, 999, 999, 999]);
  });

  it('draws uniformly below the ceiling (full jitter) and starts over after reset', () => {
    const b = new Backoff(100, 1_000, () => 0.5);
    expect([b.next(), b.next(), b.next()]).toEqual([50, 100, 200]);
    b.reset();
    expect(b.next()).toBe(50);
  });

  it('never exceeds the cap with the real random source, even after many attempts', () => {
    const b = new Backoff(500, 30_000);
    const delays = Array.from({ length: 200 }, () => b.next());
    expect(Math.max(...delays)).toBeLessThan(30_000);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(new Set(delays.slice(50)).size).toBeGreaterThan(100);
  });
});
