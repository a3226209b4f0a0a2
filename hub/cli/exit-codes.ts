import { status, type ServiceError } from '@grpc/grpc-js';

/**
 * backhaulctl's exit codes, documented in the README. 0, 1 and 2 are also what `--wait` and
 * `watch` return for a succeeded, failed or cancelled, and partial execution.
 */
export const EXIT = {
  OK: 0,
  /** An execution failed or was cancelled, or the hub failed the call. */
  FAILED: 1,
  PARTIAL: 2,
  /** The hub cannot be reached, or its TLS identity does not check out. */
  UNREACHABLE: 3,
  /** No token, or the hub does not know it (unknown or revoked). */
  BAD_TOKEN: 4,
  /** The token's role does not allow the action. */
  FORBIDDEN: 5,
  /** No object has that id or name. */
  NOT_FOUND: 6,
  /** Bad arguments or input, or no hub or CA configured. */
  USAGE: 7,
  /** The action conflicts with the current state (flow already running, name taken, in use). */
  CONFLICT: 8,
  /** Ctrl-C detached from a watch; the execution goes on. */
  DETACHED: 130,
} as const;

/** An error the CLI reports as one sentence on stderr, with its exit code. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

const EXIT_OF_STATUS: Partial<Record<status, number>> = {
  [status.UNAVAILABLE]: EXIT.UNREACHABLE,
  [status.DEADLINE_EXCEEDED]: EXIT.UNREACHABLE,
  [status.UNAUTHENTICATED]: EXIT.BAD_TOKEN,
  [status.PERMISSION_DENIED]: EXIT.FORBIDDEN,
  [status.NOT_FOUND]: EXIT.NOT_FOUND,
  [status.INVALID_ARGUMENT]: EXIT.USAGE,
  [status.ALREADY_EXISTS]: EXIT.CONFLICT,
  [status.FAILED_PRECONDITION]: EXIT.CONFLICT,
  [status.ABORTED]: EXIT.CONFLICT,
};

const isServiceError = (err: unknown): err is ServiceError => typeof (err as ServiceError | null)?.code === 'number' && (err as ServiceError).metadata !== undefined;

/** What a failed call means to the operator: the hub's own sentence where it gave one, without its code prefix. */
export function cliErrorOf(err: unknown, hub: string): CliError {
  if (err instanceof CliError) return err;
  if (!isServiceError(err)) return new CliError(EXIT.FAILED, err instanceof Error ? err.message : String(err));
  const code = err.metadata.get('backhaul-error-code')[0];
  // Without the hub's code the status came from the transport: the hub was never reached.
  if (code === undefined && (err.code === status.UNAVAILABLE || err.code === status.DEADLINE_EXCEEDED)) {
    // grpc-js wraps the socket's error in text about its channel; the socket's error is what helps.
    const cause = (err.details || 'no answer').replace(/^No connection established\. Last error: (Error: )?/, '').replace(/\. Resolution note:.*$/s, '');
    return new CliError(EXIT.UNREACHABLE, `cannot reach the hub at ${hub}: ${cause}`);
  }
  const text = (err.details || err.message).replace(/^[A-Z_]+: /, '');
  if (err.code === status.UNAUTHENTICATED) return new CliError(EXIT.BAD_TOKEN, `the hub refused the token: ${text}`);
  if (err.code === status.PERMISSION_DENIED) return new CliError(EXIT.FORBIDDEN, `not allowed: ${text}`);
  return new CliError(EXIT_OF_STATUS[err.code] ?? EXIT.FAILED, text);
}

/** 0, 2 or 1: how an ended execution's status reads as an exit code. */
export const exitOfExecution = (s: string): number => (s === 'succeeded' ? EXIT.OK : s === 'partial' ? EXIT.PARTIAL : EXIT.FAILED);
