import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { JoinToken } from '../db/entities/join-token.js';

/** Prefix that makes a leaked token recognisable in logs and secret scanners. */
const TOKEN_PREFIX = 'bhjt_';

export const hashJoinToken = (token: string): string => createHash('sha256').update(token).digest('hex');

export interface CreatedJoinToken {
  id: string;
  token: string;
  expiresAt: Date;
}

/** Creates a single-use join token. The secret is returned once; only its hash is stored. */
export async function createJoinToken(em: EntityManager, ttlMs: number, description?: string): Promise<CreatedJoinToken> {
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const now = new Date();
  const row = em.create(JoinToken, {
    id: randomUUID(),
    tokenHash: hashJoinToken(token),
    description: description ?? null,
    createdAt: now,
    expiresAt: new Date(now.getTime() + ttlMs),
    usedAt: null,
    usedByAgent: null,
  });
  await em.persistAndFlush(row);
  return { id: row.id, token, expiresAt: row.expiresAt };
}
