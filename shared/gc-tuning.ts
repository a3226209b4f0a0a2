import { setFlagsFromString } from 'node:v8';

/**
 * How much V8 lets the hub's old generation grow past what survived the last full collection
 * before it starts the next one: 100 % doubles it. The hub keeps only a small heap (35 MiB live)
 * but passes 4 MiB buffers through it by the hundred; with V8's own factor the limit stayed about
 * 24 MiB above the live heap, and the hub marked its whole heap again every few chunks
 * (24-56 full collections per 1 GiB restore, its CPU 5-7 s instead of 3 s). Measured with
 * restore-probe (cold page cache, 3 restores per run): default 7.3-7.6 s per restore with 30-38
 * full GCs in most runs; 50 % 6.8 s with 7-11; 100 % 6.0-6.4 s with 0-1, in three runs of three,
 * and the bench's hub peak RSS (in its full backup) was 240-260 MiB over 10 runs (median 250),
 * against 243-251 in 4 runs without: the collections it saves would have freed some buffers sooner. A smaller young generation instead (--max-semi-space-size=8) made it worse: 46-54 full
 * GCs. Not set in the agent: with it, 2 of 4 bench runs started the incremental with 187-198 MiB
 * still held from the full backup (77-121 MiB in 6 runs without), and one peaked at 264 MiB.
 */
export const HEAP_GROWING_PERCENT = 100;

/**
 * Sets the growing factor for this process. The flag is read each time V8 recomputes its limits,
 * after every full collection, so setting it at start-up takes effect from the first one.
 */
export function tuneGarbageCollector(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
