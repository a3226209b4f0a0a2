import { type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { AgentServiceService, type ConnectRequest, type ConnectResponse, type EnrollRequest, type EnrollResponse } from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import { enrollAgent } from '../agents/enrollment.js';
import type { SessionRegistry } from '../agents/registry.js';
import { AgentSession } from '../agents/session.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import type { CertificateAuthority } from '../pki/ca.js';
import { decodeConnectRequest, type MalformedFrame } from './frames.js';

/** The generated definition, with a decoder that turns undecodable frames into a refusal instead of INTERNAL. */
export const agentServiceDefinition = {
  ...AgentServiceService,
  connect: { ...AgentServiceService.connect, requestDeserialize: decodeConnectRequest },
};

export function agentServiceHandlers(deps: { orm: Orm; ca: CertificateAuthority; registry: SessionRegistry; log: Logger }): UntypedServiceImplementation {
  return {
    enroll(call: ServerUnaryCall<EnrollRequest, EnrollResponse>, callback: sendUnaryData<EnrollResponse>) {
      enrollAgent(deps.orm.em.fork(), deps.ca, call.request, deps.log)
        .then((res) => callback(null, res))
        .catch((err: unknown) => {
          const e = err instanceof HubError ? err : new HubError('INTERNAL', 'enrollment failed inside the hub');
          if (!(err instanceof HubError)) deps.log.error({ err }, 'enrollment failed');
          else deps.log.warn({ code: e.code, reason: e.message, peer: call.getPeer() }, 'enrollment refused');
          callback(e.toGrpc());
        });
    },
    connect(call: ServerDuplexStream<ConnectRequest | MalformedFrame, ConnectResponse>) {
      deps.registry.opened(new AgentSession(call, deps.registry));
    },
  };
}
