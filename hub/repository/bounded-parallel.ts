import { throwIfAborted } from './errors.js';

/**
 * Runs `fn` over `items` with at most `limit` calls in flight: enough to keep the disk and the
 * libuv pool busy without opening thousands of files at once. On the first error no new item is
 * started; the calls in flight are awaited, then that first error is thrown. An aborted signal
 * stops it the same way, with ABORTED.
 */
export async function forEachBounded<T>(
  items: Iterable<T>,
  limit: number,
  fn: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const it = items[Symbol.iterator]();
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure) {
      try {
        throwIfAborted(signal);
        const next = it.next();
        if (next.done) return;
        await fn(next.value);
      } catch (err) {
        failure ??= { err };
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failure) throw failure.err;
}
