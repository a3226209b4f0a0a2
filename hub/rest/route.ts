import type { FastifyInstance } from 'fastify';
import type { z } from 'zod';
import type { Logger } from '../../shared/logger.js';
import type { ApiPrincipal } from '../auth/api-tokens.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import type { Lifecycle } from '../lifecycle/lifecycle.js';
import type { ReadModel } from '../lifecycle/read-model.js';
import type { RouteAccess } from './auth.js';
import type { ApiErrorCode } from './errors.js';
import { IdParams } from './schemas.js';
import type { EventBus } from '../events/event-bus.js';
import type { HubMetrics } from '../metrics.js';

/** The lifecycle's write services the routes call; they throw HubError with stable codes. */
export type LifecycleWrites = Pick<
  Lifecycle,
  | 'addTarget'
  | 'createFlow'
  | 'updateFlow'
  | 'deleteFlow'
  | 'setFlowEnabled'
  | 'runFlow'
  | 'cancelExecution'
  | 'cancelJob'
  | 'restoreBackup'
  | 'verifyBackup'
  | 'deleteBackup'
  | 'setAgentEnabled'
>;

/** What route handlers work with. */
export interface RestDeps {
  orm: Orm;
  log: Logger;
  read: ReadModel;
  lifecycle: LifecycleWrites;
  events: EventBus;
  metrics: HubMetrics;
}

export interface RouteContext<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  principal: ApiPrincipal | null;
  deps: RestDeps;
}

/**
 * One REST route, described once: the server mounts it, and the OpenAPI document is generated
 * from the same description. Inputs are checked against the schemas before the handler runs.
 */
export interface RouteSpec<P extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** fastify syntax: /api/v1/flows/:id */
  url: string;
  access: RouteAccess;
  summary: string;
  params?: P;
  query?: Q;
  body?: B;
  status: 200 | 201 | 202 | 204;
  /** The success body's schema, registered in `apiSchemas`; null for 204. */
  response: z.ZodType | null;
  /** Domain errors the route may answer, beyond the ones every route can (documentation). */
  errors?: ApiErrorCode[];
  handler(ctx: RouteContext<z.output<P>, z.output<Q>, z.output<B>>): Promise<unknown>;
}

/** Identity, so each route's handler is typed by its own schemas. */
export function route<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(spec: RouteSpec<P, Q, B>): RouteSpec {
  return spec as unknown as RouteSpec;
}

/** The row, or a 404 that names what was asked for. */
export function found<T>(what: string, id: string, value: T | null): T {
  if (value === null) throw new HubError('NOT_FOUND', `no ${what} ${id}`);
  return value;
}

/**
 * POST /…/:id/<action>: asks the lifecycle to act on the resource the path names, then answers
 * with what the action made or changed (by default the resource itself), read back as it now is.
 */
export function actionRoute<T>(spec: {
  url: string;
  access: RouteAccess;
  summary: string;
  status: 200 | 202;
  response: z.ZodType;
  errors?: ApiErrorCode[];
  /** What the answer shows, for the 404 should it vanish meanwhile. */
  what: string;
  act(deps: RestDeps, id: string): Promise<string | void>;
  read(deps: RestDeps, id: string): Promise<T | null>;
}): RouteSpec {
  return route({
    method: 'POST',
    url: spec.url,
    access: spec.access,
    summary: spec.summary,
    params: IdParams,
    status: spec.status,
    response: spec.response,
    errors: spec.errors,
    handler: async ({ deps, params }) => {
      const shown = (await spec.act(deps, params.id)) ?? params.id;
      return found(spec.what, shown, await spec.read(deps, shown));
    },
  });
}

/**
 * Checks one part of the request. A path that does not parse names nothing (404): a malformed
 * id is as absent as an unknown one. A bad query or body is a 400 naming the field.
 */
function parseInput(schema: z.ZodType | undefined, value: unknown, part: 'params' | 'query' | 'body'): unknown {
  if (!schema) return undefined;
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  if (part === 'params') throw new HubError('NOT_FOUND', 'nothing has that id: it is not a UUID', { field: parsed.error.issues[0]?.path.join('.') ?? 'id' });
  const issues = parsed.error.issues.slice(0, 10).map((i) => {
    // An unknown key is reported at its own path, so the field named is the one to remove.
    const path = i.code === 'unrecognized_keys' ? [...i.path, i.keys[0]!] : i.path;
    return { field: path.length > 0 ? path.join('.') : part, message: i.message };
  });
  throw new HubError('INVALID_ARGUMENT', `${issues[0]!.field}: ${issues[0]!.message}`, { field: issues[0]!.field, issues });
}

/** The raw parts of a call, before they are checked against the route's schemas. */
export interface RouteInput {
  params?: unknown;
  query?: unknown;
  body?: unknown;
}

/**
 * Checks the inputs and runs the route's handler. REST and the admin gRPC service both call
 * routes through here, so they validate alike and answer with the same views.
 */
export function runRoute(spec: RouteSpec, deps: RestDeps, input: RouteInput, principal: ApiPrincipal | null): Promise<unknown> {
  return spec.handler({
    params: parseInput(spec.params, input.params, 'params'),
    query: parseInput(spec.query, input.query, 'query'),
    body: parseInput(spec.body, input.body, 'body'),
    principal,
    deps,
  });
}

export function mountRoute(app: FastifyInstance, spec: RouteSpec, deps: RestDeps): void {
  app.route({
    method: spec.method,
    url: spec.url,
    config: { access: spec.access },
    handler: async (req, reply) => {
      const out = await runRoute(spec, deps, { params: req.params, query: req.query, body: req.body }, req.principal);
      reply.code(spec.status);
      return spec.response === null ? reply.send() : out;
    },
  });
}
