import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Metadata } from '@grpc/grpc-js';
import { hubClient } from '../../agent/hub-client.js';
import type { AgentCredentials } from '../../agent/state.js';
import { hashJoinToken } from '../../hub/agents/join-tokens.js';
import { createKeyAndCsr } from '../../shared/certs.js';
import type { EnrollResponse } from '../../shared/gen/backhaul/v1/agent.js';
import { query } from '../support/database.js';

export interface EnrolledFleet {
  agents: AgentCredentials[];
  seconds: number;
}

/** The hub's CA certificate, as agents get it at enrollment. */
export async function hubCaPem(databaseUrl: string): Promise<string> {
  const rows = await query<{ cert_pem: string }>(databaseUrl, 'select cert_pem from ca_material where id = 1');
  if (rows.length !== 1) throw new Error('the hub has not created its CA yet');
  return rows[0]!.cert_pem;
}

/**
 * Enrolls `count` agents through the real Enroll RPC: join tokens are inserted in bulk
 * (hashed, as `backhaul-hub token create` stores them), then each agent makes its own key
 * and CSR and trades a token for a certificate. Returns each agent's credentials.
 */
export async function enrollFleet(o: { hubAddress: string; databaseUrl: string; count: number; concurrency?: number; namePrefix?: string }): Promise<EnrolledFleet> {
  const started = performance.now();
  const caPem = await hubCaPem(o.databaseUrl);
  const tokens = Array.from({ length: o.count }, () => `bhjt_${randomBytes(32).toString('base64url')}`);
  await query(
    o.databaseUrl,
    `insert into join_tokens (id, token_hash, description, created_at, expires_at)
     select gen_random_uuid(), h, 'bench', now(), now() + interval '1 hour' from unnest($1::text[]) as h`,
    [tokens.map(hashJoinToken)],
  );

  const client = hubClient(o.hubAddress, caPem);
  const agents: AgentCredentials[] = new Array(o.count);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < o.count; i = next++) {
      const name = `${o.namePrefix ?? 'bench-agent'}-${String(i).padStart(4, '0')}`;
      const { keyPem, csrPem } = await createKeyAndCsr(name);
      const res = await new Promise<EnrollResponse>((resolve, reject) =>
        client.enroll({ joinToken: tokens[i]!, csrPem, name, hostname: hostname() }, new Metadata(), { deadline: Date.now() + 60_000 }, (err, r) =>
          err ? reject(new Error(`enrollment of ${name} refused: ${err.details || err.message}`)) : resolve(r),
        ),
      );
      agents[i] = {
        identity: { agentId: res.agentId, hub: o.hubAddress, name, enrolledAt: new Date().toISOString() },
        keyPem,
        certPem: res.certificatePem,
        caPem: res.caCertificatePem,
      };
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency ?? 16 }, worker));
  } finally {
    client.close();
  }
  return { agents, seconds: (performance.now() - started) / 1000 };
}
