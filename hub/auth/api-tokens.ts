import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { ApiRole } from '../db/entities/api-token.js';
import { isUuid } from '../../shared/uuid.js';
import { HubError } from '../errors.js';

/** Prefix that makes a leaked token recognisable in logs and secret scanners. */
export const API_TOKEN_PREFIX = 'bh_';

/** `last_used_at` is written at most this often per token, so reads do not turn into writes. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** The stored form of a token: its SHA-256 in hex. The secret itself is never stored. */
export const hashApiToken = (token: string): string => createHash('sha256').update(token).digest('hex');

export interface ApiTokenInfo {
  id: string;
  name: string;
  role: ApiRole;
  createdAt: Date;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
}

/** A token as the admin API and `backhaul-hub api-token list --json` show it; never its secret. */
export interface ApiTokenView {
  id: string;
  name: string;
  role: ApiRole;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export const apiTokenView = (t: ApiTokenInfo): ApiTokenView => ({
  id: t.id,
  name: t.name,
  role: t.role,
  created_at: t.createdAt.toISOString(),
  last_used_at: t.lastUsedAt?.toISOString() ?? null,
  revoked_at: t.revokedAt?.toISOString() ?? null,
});

/** Who a request acts as, once its bearer token checked out. */
export interface ApiPrincipal {
  tokenId: string;
  name: string;
  role: ApiRole;
}

type Row = { id: string; name: string; role: ApiRole; created_at: Date; last_used_at: Date | null; revoked_at: Date | null };

const infoFromRow = (r: Row): ApiTokenInfo => ({
  id: r.id,
  name: r.name,
  role: r.role,
  createdAt: new Date(r.created_at),
  lastUsedAt: r.last_used_at ? new Date(r.last_used_at) : null,
  revokedAt: r.revoked_at ? new Date(r.revoked_at) : null,
});

/** Creates a token. The secret is in the answer and nowhere else: show it once. */
export async function createApiToken(em: EntityManager, name: string, role: ApiRole): Promise<ApiTokenInfo & { token: string }> {
  if (name.trim() === '') throw new HubError('INVALID_ARGUMENT', 'an API token needs a name', { field: 'name' });
  const token = API_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  const rows = await em.execute<Row[]>(
    `insert into api_tokens (id, name, role, token_hash, created_at) values (?, ?, ?, ?, now())
     returning id, name, role, created_at, last_used_at, revoked_at`,
    [randomUUID(), name, role, hashApiToken(token)],
  );
  return { ...infoFromRow(rows[0]!), token };
}

/**
 * The principal a bearer token stands for, or null when the token is unknown or revoked.
 * Tokens are found by their hash, so no secret is compared byte by byte here.
 */
export async function verifyApiToken(em: EntityManager, token: string): Promise<ApiPrincipal | null> {
  // Anything that cannot be one of our tokens is refused without a query.
  if (!token.startsWith(API_TOKEN_PREFIX) || token.length > 100) return null;
  const rows = await em.execute<Row[]>(
    'select id, name, role, created_at, last_used_at, revoked_at from api_tokens where token_hash = ?',
    [hashApiToken(token)],
  );
  const t = rows[0];
  if (!t || t.revoked_at) return null;
  if (!t.last_used_at || Date.now() - new Date(t.last_used_at).getTime() >= LAST_USED_RESOLUTION_MS) {
    // The guard in the statement keeps concurrent requests (and other hubs) to one write a minute.
    await em.execute(
      `update api_tokens set last_used_at = now()
       where id = ? and (last_used_at is null or last_used_at < now() - make_interval(secs => ?))`,
      [t.id, LAST_USED_RESOLUTION_MS / 1000],
    );
  }
  return { tokenId: t.id, name: t.name, role: t.role };
}

export async function listApiTokens(em: EntityManager): Promise<ApiTokenInfo[]> {
  const rows = await em.execute<Row[]>('select id, name, role, created_at, last_used_at, revoked_at from api_tokens order by created_at, id');
  return rows.map(infoFromRow);
}

/** Revokes a token at once; revoking it again keeps the first revocation time. */
export async function revokeApiToken(em: EntityManager, id: string): Promise<ApiTokenInfo> {
  if (!isUuid(id)) throw new HubError('NOT_FOUND', `no API token ${id}`);
  const rows = await em.execute<Row[]>(
    `update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = ?
     returning id, name, role, created_at, last_used_at, revoked_at`,
    [id],
  );
  if (!rows[0]) throw new HubError('NOT_FOUND', `no API token ${id}`);
  return infoFromRow(rows[0]);
}
