import { z } from 'zod';
import { HubError, type HubErrorCode } from '../errors.js';
import { httpStatusOf, type ApiErrorCode } from './errors.js';
import { route, type RouteSpec } from './route.js';
import { apiSchemas } from './schemas.js';

type JsonSchema = Record<string, unknown>;

export const OpenApiDocument = z.record(z.string(), z.unknown());
apiSchemas.add(OpenApiDocument, { id: 'OpenApiDocument', description: 'This document (OpenAPI 3.1).' });

const ref = (schema: z.ZodType): JsonSchema => {
  const id = apiSchemas.get(schema)?.id;
  // A route naming an unregistered schema is a programming error; the OpenAPI test finds it.
  if (!id) throw new Error('a route names a body schema that is not registered in apiSchemas');
  return { $ref: `#/components/schemas/${id}` };
};

/** Every registered schema, as components: request bodies as clients write them, the rest as the hub answers. */
function components(requestBodies: Set<z.ZodType>): Record<string, JsonSchema> {
  const uri = (id: string) => `#/components/schemas/${id}`;
  const input = z.toJSONSchema(apiSchemas, { uri, io: 'input' }).schemas;
  const output = z.toJSONSchema(apiSchemas, { uri, io: 'output' }).schemas;
  const requestIds = new Set([...requestBodies].map((s) => apiSchemas.get(s)?.id));
  return Object.fromEntries(
    Object.keys(output).map((id) => {
      const { $schema: _schema, $id: _id, ...rest } = (requestIds.has(id) ? input : output)[id] as JsonSchema;
      return [id, rest];
    }),
  );
}

/** Path and query parameters, one per property of the route's params or query schema. */
function parameters(schema: z.ZodType | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (!schema) return [];
  const js = z.toJSONSchema(schema, { io: 'input' }) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, s]) => {
    const { description, ...rest } = s;
    return { name, in: where, required: where === 'path' || (js.required ?? []).includes(name), schema: rest, ...(description ? { description } : {}) };
  });
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Invalid input; details.field names the field.',
  401: 'No token, or an unknown or revoked one.',
  403: "The token's role does not allow this.",
  404: 'Nothing has this id.',
  409: 'Conflicts with the current state.',
  413: 'The body is larger than the hub accepts.',
  415: 'The body is not application/json.',
  422: 'The request is valid but cannot be carried out as things are.',
  503: 'The database cannot be reached; retry.',
};

/** The error answers a route can give: the ones every route of its kind can, and its own. */
function errorResponses(r: RouteSpec): Record<string, JsonSchema> {
  const codes = new Map<number, Set<ApiErrorCode>>();
  const add = (status: number, code: ApiErrorCode) => codes.set(status, (codes.get(status) ?? new Set()).add(code));
  if (r.query || r.body) add(400, 'INVALID_ARGUMENT');
  if (r.access !== 'public') {
    add(401, 'UNAUTHENTICATED');
    add(403, 'PERMISSION_DENIED');
  }
  if (r.params) add(404, 'NOT_FOUND');
  if (r.body) {
    add(413, 'PAYLOAD_TOO_LARGE');
    add(415, 'UNSUPPORTED_MEDIA_TYPE');
  }
  if (r.url !== '/healthz') add(503, 'UNAVAILABLE');
  for (const code of r.errors ?? []) add(httpStatusOf(new HubError(code as HubErrorCode, '')), code);
  const out: Record<string, JsonSchema> = {};
  for (const [status, set] of [...codes].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: `${STATUS_TEXT[status] ?? 'Error.'} Codes: ${[...set].join(', ')}.`,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
  }
  return out;
}

const operationId = (r: RouteSpec): string =>
  r.method.toLowerCase() +
  r.url
    .replace('/api/v1', '')
    .split('/')
    .filter(Boolean)
    .map((seg) => (seg.startsWith(':') ? `By${seg[1]!.toUpperCase()}${seg.slice(2)}` : seg[0]!.toUpperCase() + seg.slice(1).replace(/\.json$/, 'Json')))
    .join('');

/** The OpenAPI 3.1 document of the given routes, generated from their zod schemas. */
export function buildOpenApi(routes: readonly RouteSpec[]): JsonSchema {
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z_]+)/g, '{$1}');
    const success: JsonSchema = r.response
      ? { description: 'Success.', content: { 'application/json': { schema: ref(r.response) } } }
      : { description: 'Done; no content.' };
    (paths[path] ??= {})[r.method.toLowerCase()] = {
      operationId: operationId(r),
      summary: r.summary,
      ...(r.access === 'public' ? { security: [] } : { security: [{ bearer: [] }], 'x-required-role': r.access }),
      parameters: [...parameters(r.params, 'path'), ...parameters(r.query, 'query')],
      ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: ref(r.body) } } } } : {}),
      responses: { [String(r.status)]: success, ...errorResponses(r) },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Backhaul hub REST API',
      // The version of the contract under /api/v1, not of the hub's build.
      version: '1.0.0',
      description:
        'Send "Authorization: Bearer <token>" (create one with `backhaul-hub api-token create`). Roles: viewer reads; ' +
        'operator also writes; admin also deletes backups. Every error is {code, message, details?} with a stable code.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: components(new Set(routes.flatMap((r) => (r.body ? [r.body] : [])))),
    },
    security: [{ bearer: [] }],
    paths,
  };
}

/** GET /api/v1/openapi.json: the document of `routes` and of itself, built once. */
export function openApiRoute(routes: readonly RouteSpec[]): RouteSpec {
  let doc: JsonSchema | undefined;
  const self: RouteSpec = route({
    method: 'GET',
    url: '/api/v1/openapi.json',
    access: 'public',
    summary: 'This API, described in OpenAPI 3.1.',
    status: 200,
    response: OpenApiDocument,
    handler: async () => (doc ??= buildOpenApi([...routes, self])),
  });
  return self;
}
