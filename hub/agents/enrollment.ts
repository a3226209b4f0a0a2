import { randomUUID } from 'node:crypto';
import { LockMode, type EntityManager } from '@mikro-orm/postgresql';
import { certificateSha256 } from '../../shared/certs.js';
import type { EnrollRequest, EnrollResponse } from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import { Agent } from '../db/entities/agent.js';
import { JoinToken } from '../db/entities/join-token.js';
import { HubError } from '../errors.js';
import { CsrRejectedError, type CertificateAuthority } from '../pki/ca.js';
import { hashJoinToken } from './join-tokens.js';

const MAX_NAME = 128;
const MAX_CSR = 16 * 1024;

/**
 * Trades a join token and a CSR for a signed certificate. The token is locked, checked and
 * spent in the same transaction that creates the agent, so a refused enrollment creates
 * nothing and a token can never enroll two agents.
 */
export async function enrollAgent(em: EntityManager, ca: CertificateAuthority, req: EnrollRequest, log: Logger): Promise<EnrollResponse> {
  if (!req.joinToken) throw new HubError('INVALID_ARGUMENT', 'join_token is required');
  if (!req.csrPem || req.csrPem.length > MAX_CSR) throw new HubError('INVALID_ARGUMENT', 'csr_pem is required and must be under 16 KiB');
  const hostname = req.hostname.trim();
  const name = (req.name.trim() || hostname).slice(0, MAX_NAME);
  if (!name) throw new HubError('INVALID_ARGUMENT', 'name or hostname is required');

  return em.transactional(async (tx) => {
    const token = await tx.findOne(JoinToken, { tokenHash: hashJoinToken(req.joinToken) }, { lockMode: LockMode.PESSIMISTIC_WRITE });
    if (!token) throw new HubError('JOIN_TOKEN_UNKNOWN', 'the join token is not known to this hub');
    if (token.usedAt) throw new HubError('JOIN_TOKEN_USED', `the join token was already used at ${token.usedAt.toISOString()}`);
    if (token.expiresAt.getTime() <= Date.now()) throw new HubError('JOIN_TOKEN_EXPIRED', `the join token expired at ${token.expiresAt.toISOString()}`);

    const agentId = randomUUID();
    let certPem: string;
    try {
      certPem = await ca.signAgentCsr(req.csrPem, agentId);
    } catch (err) {
      if (err instanceof CsrRejectedError) throw new HubError('CSR_INVALID', err.message);
      throw err;
    }
    const now = new Date();
    tx.create(Agent, {
      id: agentId,
      name,
      hostname: hostname || name,
      version: null,
      capabilities: { drivers: [], maxConcurrentJobs: 0 },
      inventory: [],
      online: false,
      lastSeenAt: null,
      certFingerprint: certificateSha256(certPem),
      enrolledAt: now,
      disabled: false,
      sessionEpoch: 0,
      connectedHub: null,
    });
    await tx.flush();
    token.usedAt = now;
    token.usedByAgent = agentId;
    await tx.flush();
    log.info({ agent_id: agentId, name, hostname, token_id: token.id }, 'agent enrolled');
    return { agentId, certificatePem: certPem, caCertificatePem: ca.certPem };
  });
}
