/**
 * Why an NBD operation failed; `code` is stable.
 * - CONNECT_FAILED: the socket could not be opened.
 * - HANDSHAKE_FAILED: the server does not speak fixed newstyle NBD, or lacks a required option.
 * - EXPORT_NOT_FOUND: NBD_OPT_GO named an export the server does not have.
 * - OPTION_REFUSED: the server answered an option with an error reply.
 * - META_CONTEXT_REFUSED: a requested metadata context (e.g. a dirty bitmap) was not granted.
 * - COMMAND_FAILED: the server answered a command with an error (see `errno`).
 * - PROTOCOL_VIOLATION: the server sent something the protocol forbids; the connection is dropped.
 * - BAD_REQUEST: the caller asked for something the export cannot do (out of range, read-only…).
 * - TIMEOUT: no answer in time; the connection is dropped because NBD cannot cancel a request.
 * - CLOSED: the connection closed before the answer came.
 */
export type NbdErrorCode =
  | 'CONNECT_FAILED'
  | 'HANDSHAKE_FAILED'
  | 'EXPORT_NOT_FOUND'
  | 'OPTION_REFUSED'
  | 'META_CONTEXT_REFUSED'
  | 'COMMAND_FAILED'
  | 'PROTOCOL_VIOLATION'
  | 'BAD_REQUEST'
  | 'TIMEOUT'
  | 'CLOSED';

export class NbdError extends Error {
  constructor(
    readonly code: NbdErrorCode,
    message: string,
    /** The server's errno for COMMAND_FAILED (NBD uses Linux numbers: 5 EIO, 22 EINVAL…). */
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'NbdError';
  }
}
