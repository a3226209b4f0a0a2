import { ConnectRequest } from '../../shared/gen/backhaul/v1/agent.js';

/** Stands in for a frame that failed to decode, so the session can refuse it with INVALID_ARGUMENT. */
export class MalformedFrame {
  constructor(readonly reason: string) {}
}

/**
 * grpc-js answers an undecodable request with INTERNAL. A malformed frame is the client's
 * fault, so the decoder hands the session a marker instead and the session closes the
 * stream with INVALID_ARGUMENT.
 */
export function decodeConnectRequest(buf: Buffer): ConnectRequest | MalformedFrame {
  try {
    return ConnectRequest.decode(buf);
  } catch (err) {
    return new MalformedFrame((err as Error).message);
  }
}
