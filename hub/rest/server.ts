import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { HubError } from '../errors.js';
import { agentsRoutes } from './agents-routes.js';
import { registerAuth } from './auth.js';
import { backupsRoutes } from './backups-routes.js';
import { clientErrorHandler, frameworkErrorHandler, refuseConnect, registerErrorHandling } from './errors.js';
import { registerEventStream } from './events-route.js';
import { executionsRoutes } from './executions-routes.js';
import { flowsRoutes } from './flows-routes.js';
import { healthRoutes } from './health-routes.js';
import { jobsRoutes } from './jobs-routes.js';
import { openApiRoute } from './openapi.js';
import { mountRoute, type RestDeps, type RouteSpec } from './route.js';
import { targetsRoutes } from './targets-routes.js';

const RESOURCE_ROUTES: readonly RouteSpec[] = [
  ...healthRoutes,
  ...agentsRoutes,
  ...targetsRoutes,
  ...flowsRoutes,
  ...executionsRoutes,
  ...jobsRoutes,
  ...backupsRoutes,
];

/** Every route the REST API serves, the OpenAPI document's own included. */
export const REST_ROUTES: readonly RouteSpec[] = [...RESOURCE_ROUTES, openApiRoute(RESOURCE_ROUTES)];

export interface RestServerOptions {
  /** host:port; port 0 picks a free one. */
  listen: string;
  bodyLimitBytes: number;
  sseHeartbeatMs: number;
  metricsToken?: string;
}

/** The fastify app with every route, auth and error mapping; not listening yet. */
export function buildRestServer(deps: RestDeps, opts: Omit<RestServerOptions, 'listen'>): FastifyInstance {
  const logger: FastifyBaseLogger = deps.log;
  const app = Fastify({
    loggerInstance: logger,
    // Requests are logged once, below, with the token that made them.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimitBytes,
    // Answered by our own hook, in our error shape, instead of fastify's.
    return503OnClosing: false,
    frameworkErrors: frameworkErrorHandler(deps.log),
    clientErrorHandler: clientErrorHandler(deps.log),
  });

  refuseConnect(app.server);

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async () => {
    if (closing) throw new HubError('UNAVAILABLE', 'the hub is shutting down; retry on another hub or later');
  });
  registerAuth(app, deps.orm, opts.metricsToken);
  registerErrorHandling(app, deps.log);

  // JSON only: a text/plain body is a 415, not a string a route might misread. An empty JSON
  // body counts as no body, since clients often send the header on bodiless POSTs.
  app.removeContentTypeParser('text/plain');
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '') done(null, undefined);
    else parseJson(req, body as string, done);
  });

  // Reads are logged at debug (probes and UIs poll); writes at info, as an audit trail.
  app.addHook('onResponse', async (req, reply) => {
    const level = req.method === 'GET' || req.method === 'HEAD' ? 'debug' : 'info';
    deps.log[level]({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime), token: req.principal?.name ?? null }, 'REST request');
  });

  for (const r of REST_ROUTES) mountRoute(app, r, deps);
  // Not JSON, so outside the route table and the OpenAPI document: Prometheus text, and the event stream.
  app.get('/metrics', { config: { access: 'viewer', metricsToken: true } }, async (_req, reply) => {
    const text = await deps.metrics.registry.metrics();
    return reply.type(deps.metrics.registry.contentType).send(text);
  });
  registerEventStream(app, deps.events, deps.log, { heartbeatMs: opts.sseHeartbeatMs, onClients: (n) => deps.metrics.eventStreamClients.set(n) });
  return app;
}

/** Builds the server and starts listening; resolves with the bound port. */
export async function startRestServer(deps: RestDeps, opts: RestServerOptions): Promise<{ app: FastifyInstance; port: number }> {
  const { host, port } = parseListen(opts.listen);
  const app = buildRestServer(deps, opts);
  try {
    await app.listen({ host, port });
  } catch (err) {
    await app.close();
    throw err;
  }
  const addr = app.server.address();
  if (!addr || typeof addr === 'string') throw new Error(`REST server bound to an unexpected address: ${String(addr)}`);
  deps.log.info({ listen: opts.listen, port: addr.port }, 'REST API listening');
  return { app, port: addr.port };
}

/** "host:port", or "[v6]:port". */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`invalid listen address "${listen}": use host:port, such as 0.0.0.0:8080`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
