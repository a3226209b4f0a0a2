import { hostname as osHostname } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { fetchHubCa } from '../shared/hub-ca.js';
import { Metadata } from '@grpc/grpc-js';
import { certificateSha256, createKeyAndCsr, normalizeFingerprint } from '../shared/certs.js';
import type { Logger } from '../shared/logger.js';
import { hubClient } from './hub-client.js';
import { saveCredentials, type AgentIdentity } from './state.js';

export class EnrollError extends Error {
  constructor(
    readonly code: 'BAD_ARGUMENT' | 'HUB_UNREACHABLE' | 'CA_MISMATCH' | 'REFUSED',
    message: string,
  ) {
    super(message);
  }
}

export interface EnrollOptions {
  hub: string;
  token: string;
  caSha256: string;
  stateDir: string;
  name?: string;
  timeoutMs?: number;
}

/**
 * Enrolls like `kubeadm join`: fetch the hub's CA over an unverified TLS handshake, trust
 * it only if its SHA-256 matches the fingerprint the operator was given, then send a CSR
 * over TLS verified against that CA. The private key never leaves this host.
 */
export async function enroll(opts: EnrollOptions, log: Logger): Promise<AgentIdentity> {
  const expected = normalizeFingerprint(opts.caSha256);
  if (!expected) throw new EnrollError('BAD_ARGUMENT', '--ca-sha256 must be 64 hex digits (colons and a "sha256:" prefix are allowed)');
  const { host, port } = splitHostPort(opts.hub);
  const caPem = await fetchHubCa(host, port, opts.timeoutMs ?? 10_000).catch((err: unknown) => {
    throw new EnrollError('HUB_UNREACHABLE', (err as Error).message);
  });
  const actual = certificateSha256(caPem);
  if (actual !== expected) {
    throw new EnrollError('CA_MISMATCH', `the hub's CA fingerprint is ${actual}, not the expected ${expected}; refusing to trust this hub`);
  }
  const name = opts.name ?? osHostname();
  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const client = hubClient(opts.hub, caPem);
  try {
    const res = await new Promise<{ agentId: string; certificatePem: string; caCertificatePem: string }>((resolve, reject) => {
      client.enroll(
        { joinToken: opts.token, csrPem, name, hostname: osHostname() },
        new Metadata(),
        { deadline: Date.now() + (opts.timeoutMs ?? 10_000) },
        (err, r) => (err ? reject(new EnrollError('REFUSED', `the hub refused enrollment: ${err.details || err.message}`)) : resolve(r)),
      );
    });
    if (certificateSha256(res.caCertificatePem) !== expected) throw new EnrollError('CA_MISMATCH', 'the hub returned a different CA than the one verified');
    const cert = new X509Certificate(res.certificatePem);
    if (!cert.checkIssued(new X509Certificate(caPem))) throw new EnrollError('REFUSED', 'the returned certificate is not issued by the hub CA');
    const identity: AgentIdentity = { agentId: res.agentId, hub: opts.hub, name, enrolledAt: new Date().toISOString() };
    await saveCredentials(opts.stateDir, { identity, keyPem, certPem: res.certificatePem, caPem });
    log.info({ agent_id: res.agentId, hub: opts.hub }, 'enrolled');
    return identity;
  } finally {
    client.close();
  }
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(addr.trim());
  if (!m) throw new EnrollError('BAD_ARGUMENT', `--hub must be HOST:PORT, got "${addr}"`);
  return { host: m[1]!, port: Number(m[2]) };
}
