import type { AdminServiceServer } from '../../shared/gen/backhaul/v1/admin.js';
import { createJoinToken } from '../agents/join-tokens.js';
import { apiTokenView, createApiToken, listApiTokens, revokeApiToken } from '../auth/api-tokens.js';
import { API_ROLES, type ApiRole } from '../db/entities/api-token.js';
import { HubError } from '../errors.js';
import { runRoute, type RestDeps, type RouteInput, type RouteSpec } from '../rest/route.js';
import { REST_ROUTES } from '../rest/server.js';

/** What the operations work with: the REST routes' dependencies, and the CA they hand to agents. */
export interface AdminDeps extends RestDeps {
  caFingerprint: string;
}

/**
 * One unary AdminService call: the role it needs, whether it changes anything (for the audit
 * log), and what it does. Most are a REST route run through `runRoute`, so they share its
 * validation, its application-layer calls and its views; only token management, which REST
 * does not offer, calls the application functions itself.
 */
export interface AdminOperation {
  access: ApiRole;
  writes: boolean;
  run(req: any, deps: AdminDeps): Promise<object>;
}

type UnaryName = Exclude<keyof AdminServiceServer, 'watchExecution'>;

const JOIN_TOKEN_DEFAULT_TTL_S = 3600;
const JOIN_TOKEN_MAX_TTL_S = 30 * 86_400;

function restRoute(method: RouteSpec['method'], url: string): RouteSpec {
  const spec = REST_ROUTES.find((r) => r.method === method && r.url === url);
  if (!spec || spec.access === 'public') throw new Error(`AdminService names REST route ${method} ${url}, which does not exist or is public`);
  return spec;
}

/** The call as the REST route `method url`, with `input` built from the request; `field` names where the view goes in the answer (none: the view is the answer, as for lists). */
function viaRoute(method: RouteSpec['method'], url: string, input: (req: any) => RouteInput, field?: string): AdminOperation {
  const spec = restRoute(method, url);
  return {
    access: spec.access as ApiRole,
    writes: method !== 'GET',
    run: async (req, deps) => {
      const out = await runRoute(spec, deps, input(req), null);
      if (spec.response === null) return {};
      return field ? { [field]: out } : (out as object);
    },
  };
}

const byId = (req: { id: string }): RouteInput => ({ params: { id: req.id } });
const byIdWithBody = (req: { id: string; body?: unknown }): RouteInput => ({ params: { id: req.id }, body: req.body });
/** Proto3 optionals arrive as undefined when unset; the REST query schemas treat that as absent. */
const page = (req: { limit?: number; offset?: number }) => ({ limit: req.limit, offset: req.offset });

function tokenRole(role: string): ApiRole {
  if (!(API_ROLES as readonly string[]).includes(role)) throw new HubError('INVALID_ARGUMENT', `role must be one of ${API_ROLES.join(', ')}`, { field: 'role' });
  return role as ApiRole;
}

const direct = (access: ApiRole, writes: boolean, run: AdminOperation['run']): AdminOperation => ({ access, writes, run });

export const ADMIN_OPERATIONS: Record<UnaryName, AdminOperation> = {
  listAgents: viaRoute('GET', '/api/v1/agents', () => ({})),
  getAgent: viaRoute('GET', '/api/v1/agents/:id', byId, 'agent'),
  disableAgent: viaRoute('POST', '/api/v1/agents/:id/disable', byId, 'agent'),
  enableAgent: viaRoute('POST', '/api/v1/agents/:id/enable', byId, 'agent'),
  createJoinToken: direct('operator', true, async (req: { ttlSeconds: number; description: string }, deps) => {
    const ttl = req.ttlSeconds || JOIN_TOKEN_DEFAULT_TTL_S;
    if (ttl > JOIN_TOKEN_MAX_TTL_S) throw new HubError('INVALID_ARGUMENT', `ttl_seconds must be at most ${JOIN_TOKEN_MAX_TTL_S} (30 days)`, { field: 'ttl_seconds' });
    if (req.description.length > 500) throw new HubError('INVALID_ARGUMENT', 'description must be at most 500 characters', { field: 'description' });
    const t = await createJoinToken(deps.orm.em.fork(), ttl * 1000, req.description || undefined);
    return { joinToken: { id: t.id, token: t.token, expires_at: t.expiresAt.toISOString(), ca_sha256: deps.caFingerprint } };
  }),

  listTargets: viaRoute('GET', '/api/v1/targets', (req) => ({ query: { agent_id: req.agentId } })),
  getTarget: viaRoute('GET', '/api/v1/targets/:id', byId, 'target'),
  createTarget: viaRoute('POST', '/api/v1/targets', (req) => ({ body: req.body }), 'target'),

  listFlows: viaRoute('GET', '/api/v1/flows', () => ({})),
  getFlow: viaRoute('GET', '/api/v1/flows/:id', byId, 'flow'),
  createFlow: viaRoute('POST', '/api/v1/flows', (req) => ({ body: req.body }), 'flow'),
  updateFlow: viaRoute('PATCH', '/api/v1/flows/:id', byIdWithBody, 'flow'),
  deleteFlow: viaRoute('DELETE', '/api/v1/flows/:id', byId),
  enableFlow: viaRoute('POST', '/api/v1/flows/:id/enable', byId, 'flow'),
  disableFlow: viaRoute('POST', '/api/v1/flows/:id/disable', byId, 'flow'),
  runFlow: viaRoute('POST', '/api/v1/flows/:id/run', byId, 'execution'),

  listExecutions: viaRoute('GET', '/api/v1/executions', (req) => ({ query: { flow_id: req.flowId, status: req.status, ...page(req) } })),
  getExecution: viaRoute('GET', '/api/v1/executions/:id', byId, 'execution'),
  cancelExecution: viaRoute('POST', '/api/v1/executions/:id/cancel', byId, 'execution'),

  getJob: viaRoute('GET', '/api/v1/jobs/:id', byId, 'job'),
  getJobLog: viaRoute('GET', '/api/v1/jobs/:id/log', (req) => ({ params: { id: req.id }, query: { limit: req.limit } })),
  cancelJob: viaRoute('POST', '/api/v1/jobs/:id/cancel', byId, 'job'),

  listBackups: viaRoute('GET', '/api/v1/backups', (req) => ({ query: { target_id: req.targetId, agent_id: req.agentId, ...page(req) } })),
  getBackup: viaRoute('GET', '/api/v1/backups/:id', byId, 'backup'),
  restoreBackup: viaRoute('POST', '/api/v1/backups/:id/restore', byIdWithBody, 'job'),
  verifyBackup: viaRoute('POST', '/api/v1/backups/:id/verify', byId, 'job'),
  deleteBackup: viaRoute('DELETE', '/api/v1/backups/:id', byId),

  createApiToken: direct('admin', true, async (req: { name: string; role: string }, deps) => {
    if (req.name.length > 200) throw new HubError('INVALID_ARGUMENT', 'name must be at most 200 characters', { field: 'name' });
    const t = await createApiToken(deps.orm.em.fork(), req.name, tokenRole(req.role));
    return { apiToken: { ...apiTokenView(t), token: t.token } };
  }),
  listApiTokens: direct('admin', false, async (_req, deps) => ({ items: (await listApiTokens(deps.orm.em.fork())).map(apiTokenView) })),
  revokeApiToken: direct('admin', true, async (req: { id: string }, deps) => ({ apiToken: apiTokenView(await revokeApiToken(deps.orm.em.fork(), req.id)) })),
};
