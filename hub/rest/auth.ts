import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { verifyApiToken, type ApiPrincipal } from '../auth/api-tokens.js';
import type { ApiRole } from '../db/entities/api-token.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';

/** Who may call a route: anyone (health, the OpenAPI document), or a token of at least this role. */
export type RouteAccess = ApiRole | 'public';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess;
    /** The route also accepts the hub's metrics token (Prometheus scrapes with it). */
    metricsToken?: boolean;
  }
  interface FastifyRequest {
    principal: ApiPrincipal | null;
  }
}

/** Each role can do what the roles below it can: viewer reads, operator writes, admin deletes backups. */
const RANK: Record<ApiRole, number> = { viewer: 1, operator: 2, admin: 3 };

export const roleAllows = (have: ApiRole, need: ApiRole): boolean => RANK[have] >= RANK[need];

/**
 * Checks the bearer token on every request before its body is read or validated, so an
 * unauthenticated caller learns nothing about inputs and cannot make the hub parse them.
 */
export function registerAuth(app: FastifyInstance, orm: Orm, metricsToken?: string): void {
  const metricsDigest = metricsToken ? createHash('sha256').update(metricsToken).digest() : null;
  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    // Unknown routes answer 404 whoever asks (the route list is public in the OpenAPI
    // document); a known route without an access rule is closed to all but admins.
    const access = req.routeOptions.config.access ?? (req.is404 ? 'public' : 'admin');
    if (access === 'public') return;
    // Prometheus may scrape with the metrics token alone; it opens nothing else.
    const bearer = /^Bearer +(\S+) *$/i.exec(typeof req.headers.authorization === 'string' ? req.headers.authorization : '')?.[1];
    if (metricsDigest && bearer && req.routeOptions.config.metricsToken && timingSafeEqual(createHash('sha256').update(bearer).digest(), metricsDigest)) return;
    req.principal = await authorize(orm, req.headers.authorization, access, 'this route');
  });
}

/**
 * The principal behind an "Authorization: Bearer <token>" value, if its role allows `access`.
 * REST headers and admin gRPC metadata are checked by this one function.
 */
export async function authorize(orm: Orm, header: unknown, access: ApiRole, what: string): Promise<ApiPrincipal> {
  const m = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header) : null;
  if (!m) throw new HubError('UNAUTHENTICATED', `${what} needs an "Authorization: Bearer <token>" header`);
  const principal = await verifyApiToken(orm.em.fork(), m[1]!);
  if (!principal) throw new HubError('UNAUTHENTICATED', 'the token is unknown or revoked');
  if (!roleAllows(principal.role, access)) {
    throw new HubError('PERMISSION_DENIED', `this action needs the ${access} role; the token has ${principal.role}`, { required_role: access, role: principal.role });
  }
  return principal;
}
