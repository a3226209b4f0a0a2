import type { Command } from 'commander';
import { isUuid } from '../../shared/uuid.js';
import { AdminClient, resolveConnection, type ConnectionFlags } from './connection.js';
import { CliError, EXIT } from './exit-codes.js';
import { json } from './format.js';

/** What a command's action gets: the admin client (connected on first use) and the output mode. */
export interface Ctx {
  json: boolean;
  client(): Promise<AdminClient>;
  /** Prints the REST-shaped value with --json, else what `human` renders. */
  print(value: unknown, human: () => string): void;
}

type GlobalFlags = ConnectionFlags & { json?: boolean };

/**
 * Wraps an action: builds its context from the global flags, closes the channel afterwards, and
 * sets the exit code the action returns (0 when it returns nothing).
 */
export function act<A extends unknown[]>(fn: (ctx: Ctx, ...args: A) => Promise<number | void>) {
  return async function (this: Command, ...args: unknown[]): Promise<void> {
    const flags = this.optsWithGlobals<GlobalFlags>();
    let client: AdminClient | null = null;
    const ctx: Ctx = {
      json: flags.json === true,
      client: async () => (client ??= new AdminClient(await resolveConnection(flags))),
      print: (value, human) => process.stdout.write(flags.json ? json(value) : human()),
    };
    try {
      // commander passes the positional arguments, then the options object, then the command.
      process.exitCode = (await fn(ctx, ...(args as A))) ?? EXIT.OK;
    } finally {
      (client as AdminClient | null)?.close();
    }
  };
}

/** Adds the example every command's --help shows. */
export function example<T extends Command>(cmd: T, ...lines: string[]): T {
  return cmd.addHelpText('after', `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}`);
}

/** A flow's id, from its id or its name (names are unique). */
export async function flowId(ctx: Ctx, ref: string): Promise<string> {
  if (isUuid(ref)) return ref;
  const { items } = await (await ctx.client()).call('listFlows', {});
  const flow = items.find((f) => f.name === ref);
  if (!flow) throw new CliError(EXIT.NOT_FOUND, `no flow named "${ref}"`);
  return flow.id as string;
}

/** Commander's parser for counts such as --limit. */
export function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CliError(EXIT.USAGE, `"${v}" is not a whole number`);
  return n;
}

/** --limit and --offset, for the commands that list a page. */
export const paged = (c: Command): Command => c.option('--limit <n>', 'at most this many (default 50)', count).option('--offset <n>', 'skip this many', count);

/** The line under a table that shows only part of what matches. */
export const pageNote = (shown: number, total: number): string => (total > shown ? `(${shown} of ${total}; page with --limit and --offset)\n` : '');
