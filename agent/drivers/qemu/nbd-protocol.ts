/**
 * NBD wire constants (fixed newstyle negotiation, structured replies, metadata contexts), as
 * specified in the NBD protocol document (doc/proto.md of the reference implementation).
 * All integers on the wire are big-endian.
 */

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags share bit meanings. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
} as const;

/** Option reply types with bit 31 set are errors. */
export const REP_ERR_BIT = 0x80000000;
export const REP_ERR_NAMES: Record<number, string> = {
  [REP_ERR_BIT + 1]: 'NBD_REP_ERR_UNSUP',
  [REP_ERR_BIT + 2]: 'NBD_REP_ERR_POLICY',
  [REP_ERR_BIT + 3]: 'NBD_REP_ERR_INVALID',
  [REP_ERR_BIT + 4]: 'NBD_REP_ERR_PLATFORM',
  [REP_ERR_BIT + 5]: 'NBD_REP_ERR_TLS_REQD',
  [REP_ERR_BIT + 6]: 'NBD_REP_ERR_UNKNOWN',
  [REP_ERR_BIT + 7]: 'NBD_REP_ERR_SHUTDOWN',
  [REP_ERR_BIT + 8]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [REP_ERR_BIT + 9]: 'NBD_REP_ERR_TOO_BIG',
};
export const REP_ERR_UNSUP = REP_ERR_BIT + 1;
export const REP_ERR_UNKNOWN = REP_ERR_BIT + 6;

export const INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags sent with NBD_INFO_EXPORT. */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;
export type NbdCommand = (typeof CMD)[keyof typeof CMD];

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
} as const;

export const REPLY_FLAG_DONE = 1 << 0;

export const CHUNK = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: (1 << 15) + 1,
  ERROR_OFFSET: (1 << 15) + 2,
} as const;
export const CHUNK_ERROR_BIT = 1 << 15;

/** `base:allocation` extent flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;
/** `qemu:dirty-bitmap:*` extent flag. */
export const STATE_DIRTY = 1 << 0;

export const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};
export const ESHUTDOWN = 108;

/** The payload limit a client must assume when the server states none (NBD_INFO_BLOCK_SIZE absent). */
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;

export const errnoName = (errno: number) => ERRNO_NAMES[errno] ?? `errno ${errno}`;
