import type { ExecutionDetailView } from '../lifecycle/read-model.js';
import type { AdminClient } from './connection.js';
import { CliError, cliErrorOf, EXIT, exitOfExecution } from './exit-codes.js';
import { PlainProgress, TtyProgress, type ProgressView } from './progress.js';

/** How long a follow keeps trying to re-attach when the hub goes away (a restart, a failover). */
const REATTACH_FOR_MS = 60_000;
const REATTACH_EVERY_MS = 1_000;

export interface FollowOptions {
  /** Print every update as one JSON line (NDJSON) instead of bars or lines. */
  ndjson?: boolean;
  /** Print nothing while following; the caller prints the final view. */
  quiet?: boolean;
}

/**
 * Follows an execution through WatchExecution until it ends, and answers with its final view
 * and exit code. Ctrl-C detaches, leaving the execution running, and says how to cancel it.
 */
export async function followExecution(client: AdminClient, id: string, opts: FollowOptions = {}): Promise<{ view: ExecutionDetailView; exitCode: number }> {
  const out = process.stdout;
  const view: ProgressView | null = opts.ndjson || opts.quiet ? null : out.isTTY ? new TtyProgress(out) : new PlainProgress(out);
  let last: ExecutionDetailView | null = null;
  let lostSince: number | null = null;
  const detach = () => {
    process.stderr.write(`\nDetached; execution ${id} keeps running. Follow it again with "backhaulctl executions watch ${id}", or cancel it with "backhaulctl executions cancel ${id}".\n`);
    process.exit(EXIT.DETACHED);
  };
  process.once('SIGINT', detach);
  try {
    for (;;) {
      try {
        last = await watchOnce(client, id, (e) => {
          lostSince = null;
          if (opts.ndjson) out.write(`${JSON.stringify(e)}\n`);
          else view?.update(e);
        }) ?? last;
        if (last && last.status !== 'running') break;
        throw new CliError(EXIT.UNREACHABLE, 'the hub ended the watch before the execution ended');
      } catch (err) {
        const e = cliErrorOf(err, client.conn.hub);
        // Only a watch that was working is retried: a bad token or an unknown id will not get better.
        if (e.exitCode !== EXIT.UNREACHABLE || last === null) throw e;
        lostSince ??= Date.now();
        if (Date.now() - lostSince > REATTACH_FOR_MS) throw e;
        process.stderr.write(`lost the hub (${e.message}); re-attaching…\n`);
        await new Promise((r) => setTimeout(r, REATTACH_EVERY_MS));
      }
    }
  } finally {
    process.removeListener('SIGINT', detach);
  }
  view?.finish(last);
  return { view: last, exitCode: exitOfExecution(last.status) };
}

/** One WatchExecution stream; resolves with the last view when the hub ends it. */
function watchOnce(client: AdminClient, id: string, onView: (e: ExecutionDetailView) => void): Promise<ExecutionDetailView | null> {
  return new Promise((resolve, reject) => {
    let last: ExecutionDetailView | null = null;
    const stream = client.watch(id);
    stream.on('data', (msg: { execution?: { [key: string]: unknown } }) => {
      last = msg.execution as unknown as ExecutionDetailView;
      onView(last);
    });
    // A failed stream emits 'error' (with its status); 'status' OK means the hub ended it cleanly.
    stream.on('error', reject);
    stream.on('status', (s: { code: number }) => {
      if (s.code === 0) resolve(last);
    });
  });
}
