import { Metadata, status } from '@grpc/grpc-js';

/**
 * Every error the hub reports on purpose, with its stable code and its gRPC status.
 * Codes never change meaning; clients and tests match on them, never on messages.
 */
export const HUB_ERRORS = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  /** Join token: not known to this hub. */
  JOIN_TOKEN_UNKNOWN: status.UNAUTHENTICATED,
  /** Join token: past its expiry. */
  JOIN_TOKEN_EXPIRED: status.UNAUTHENTICATED,
  /** Join token: already used by another enrollment. */
  JOIN_TOKEN_USED: status.UNAUTHENTICATED,
  /** The CSR cannot be parsed, does not verify or has a weak key. */
  CSR_INVALID: status.INVALID_ARGUMENT,
  /** Connect without a client certificate signed by the hub's CA. */
  CLIENT_CERT_REQUIRED: status.UNAUTHENTICATED,
  /** The certificate is not the one on record for the agent (re-enrolled or revoked). */
  CLIENT_CERT_UNKNOWN: status.PERMISSION_DENIED,
  /** Hello names a different agent than the certificate. */
  AGENT_ID_MISMATCH: status.PERMISSION_DENIED,
  /** An operator disabled the agent. */
  AGENT_DISABLED: status.PERMISSION_DENIED,
  /** Frame order broken: first frame not Hello, or a second Hello. */
  PROTOCOL_VIOLATION: status.FAILED_PRECONDITION,
  /** A frame that cannot be decoded or carries nothing. */
  MALFORMED_FRAME: status.INVALID_ARGUMENT,
  /** No Hello within the deadline after the stream opened. */
  HELLO_TIMEOUT: status.DEADLINE_EXCEEDED,
  /** No frame within the heartbeat grace. */
  HEARTBEAT_MISSED: status.UNAVAILABLE,
  /** A newer stream from the same agent took over. */
  SESSION_REPLACED: status.ABORTED,
  /** The hub is shutting down. */
  HUB_DRAINING: status.UNAVAILABLE,
  /** Data plane: the job named is unknown, another agent's, not running, or of another kind. */
  JOB_NOT_FOUND: status.NOT_FOUND,
  JOB_NOT_OWNED: status.PERMISSION_DENIED,
  JOB_NOT_RUNNING: status.FAILED_PRECONDITION,
  WRONG_JOB_KIND: status.FAILED_PRECONDITION,
  /** Data plane: content that does not match its digest, or a corrupt index. */
  DATA_LOSS: status.DATA_LOSS,
  INDEX_CORRUPT: status.DATA_LOSS,
  /** Data plane: a chunk or index the repository does not hold. */
  CHUNK_MISSING: status.NOT_FOUND,
  INDEX_NOT_FOUND: status.NOT_FOUND,
  /** A backup of this target is already running: one job per target at a time. */
  TARGET_BUSY: status.FAILED_PRECONDITION,
  /** Lifecycle and API: an id that names nothing. */
  NOT_FOUND: status.NOT_FOUND,
  /** A name that must be unique is taken. */
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  /** Run now on a flow that has an execution running; details name it. */
  FLOW_ALREADY_RUNNING: status.ABORTED,
  /** Run now on a flow without targets. */
  FLOW_HAS_NO_TARGETS: status.FAILED_PRECONDITION,
  /** Run now on a disabled flow. */
  FLOW_DISABLED: status.FAILED_PRECONDITION,
  /** Deleting a flow while it runs, or a backup a running job reads. */
  IN_USE: status.FAILED_PRECONDITION,
  /** API: no token, or a token that is unknown or revoked. */
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  /** API: the token's role does not allow the action. */
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  /** The database cannot be reached right now; retry. */
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
} as const;

export type HubErrorCode = keyof typeof HUB_ERRORS;

export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
    /** Structured facts for clients, such as the id of the running execution. */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'HubError';
  }

  get grpcStatus(): status {
    return HUB_ERRORS[this.code];
  }

  /**
   * The shape grpc-js sends as a status: the code leads the details, and travels again in the
   * `backhaul-error-code` trailer so clients can match it without parsing text.
   */
  toGrpc(): { code: status; details: string; metadata: Metadata } {
    const metadata = new Metadata();
    metadata.set('backhaul-error-code', this.code);
    return { code: this.grpcStatus, details: `${this.code}: ${this.message}`, metadata };
  }
}
