/**
 * Runs a benchmark's body so that its servers never outlive it: on return or throw the body's
 * cleanup runs; on SIGINT/SIGTERM it runs and the process exits 130; should the process exit
 * without either, `killNow` takes the children down synchronously. The handlers are removed
 * afterwards, since another benchmark may run next in the same process with its own.
 */
export async function withCleanup<T>(
  opts: { cleanup: () => Promise<void>; killNow: () => void; progress: (msg: string) => void; announce?: string },
  body: () => Promise<T>,
): Promise<T> {
  const onExit = () => opts.killNow();
  const onSignal = (sig: NodeJS.Signals) => {
    opts.progress(`${sig}: cleaning up`);
    void opts.cleanup().finally(() => process.exit(130));
  };
  process.on('exit', onExit);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await body();
  } finally {
    if (opts.announce) opts.progress(opts.announce);
    await opts.cleanup();
    process.off('exit', onExit);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
