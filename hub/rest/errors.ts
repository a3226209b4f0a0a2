import { STATUS_CODES, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { status as GrpcStatus } from '@grpc/grpc-js';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../shared/logger.js';
import { HubError, type HubErrorCode } from '../errors.js';
import { isDatabaseUnavailable } from '../db/unavailable.js';

/** Codes only the HTTP layer produces, beside the hub's own. */
export type ApiErrorCode = HubErrorCode | 'PAYLOAD_TOO_LARGE' | 'UNSUPPORTED_MEDIA_TYPE' | 'HEADERS_TOO_LARGE' | 'REQUEST_TIMEOUT';

/** Every error answer: a stable code, a message for people, and facts for programs. */
export interface ApiErrorBody {
  code: ApiErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export interface ApiError {
  status: number;
  body: ApiErrorBody;
}

/** Hub codes whose HTTP status is not the one their gRPC status suggests. */
const HTTP_STATUS_OF_CODE: Partial<Record<HubErrorCode, number>> = {
  FLOW_ALREADY_RUNNING: 409,
  IN_USE: 409,
  TARGET_BUSY: 409,
  FLOW_HAS_NO_TARGETS: 422,
  FLOW_DISABLED: 422,
};

const HTTP_STATUS_OF_GRPC: Partial<Record<GrpcStatus, number>> = {
  [GrpcStatus.INVALID_ARGUMENT]: 400,
  [GrpcStatus.UNAUTHENTICATED]: 401,
  [GrpcStatus.PERMISSION_DENIED]: 403,
  [GrpcStatus.NOT_FOUND]: 404,
  [GrpcStatus.ALREADY_EXISTS]: 409,
  [GrpcStatus.ABORTED]: 409,
  [GrpcStatus.FAILED_PRECONDITION]: 409,
  [GrpcStatus.DEADLINE_EXCEEDED]: 504,
  [GrpcStatus.UNAVAILABLE]: 503,
};

export const httpStatusOf = (e: HubError): number => HTTP_STATUS_OF_CODE[e.code] ?? HTTP_STATUS_OF_GRPC[e.grpcStatus] ?? 500;

/** The code an HTTP-layer refusal carries, by its status. */
const CODE_OF_HTTP_STATUS: Record<number, ApiErrorCode> = {
  400: 'INVALID_ARGUMENT',
  404: 'NOT_FOUND',
  408: 'REQUEST_TIMEOUT',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'NOT_FOUND',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  431: 'HEADERS_TOO_LARGE',
};

/**
 * Maps any error to what the client sees, and how loudly to log it. Hub errors keep their code;
 * fastify's own refusals (body too large, bad JSON, wrong media type) get theirs; a database
 * that cannot be reached is a 503 to retry. Anything else is a 500 and an error log: a bug.
 */
export function apiErrorOf(err: unknown): ApiError & { level: 'debug' | 'warn' | 'error' } {
  if (err instanceof HubError) {
    const body: ApiErrorBody = { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) };
    return { status: httpStatusOf(err), body, level: 'debug' };
  }
  if (isDatabaseUnavailable(err)) {
    return { status: 503, body: { code: 'UNAVAILABLE', message: 'the database cannot be reached; retry later' }, level: 'warn' };
  }
  const fe = err as Partial<FastifyError>;
  if (typeof fe.code === 'string' && fe.code.startsWith('FST_') && typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    const code = CODE_OF_HTTP_STATUS[fe.statusCode] ?? 'INVALID_ARGUMENT';
    return { status: code === 'NOT_FOUND' ? 404 : fe.statusCode, body: { code, message: fastifyMessage(fe) }, level: 'debug' };
  }
  // SQLSTATE class 22 (data exception): a value the validation let through that PostgreSQL
  // cannot read. The client's input is at fault, but the gap in validation is worth a warning.
  if (typeof fe.code === 'string' && /^22[0-9A-Z]{3}$/.test(fe.code)) {
    return { status: 400, body: { code: 'INVALID_ARGUMENT', message: 'a value in the request is out of range or malformed' }, level: 'warn' };
  }
  return { status: 500, body: { code: 'INTERNAL', message: 'internal error in the hub; it has been logged' }, level: 'error' };
}

function fastifyMessage(e: Partial<FastifyError>): string {
  switch (e.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'the request body is not valid JSON';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'the request body is empty but its content type is application/json';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return 'the request body is larger than this hub accepts';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'request bodies must be application/json';
    case 'FST_ERR_BAD_URL':
      return 'the URL is not valid percent-encoding';
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return 'nothing has that id: it is too long';
    default:
      return e.message ?? 'bad request';
  }
}

function send(reply: FastifyReply, req: FastifyRequest, err: unknown, log: Logger): FastifyReply {
  const e = apiErrorOf(err);
  if (e.level === 'debug') log.debug({ code: e.body.code, method: req.method, url: req.url }, 'REST request refused');
  else log[e.level]({ err, code: e.body.code, method: req.method, url: req.url }, 'REST request failed');
  if (e.status === 401) reply.header('www-authenticate', 'Bearer');
  return reply.code(e.status).type('application/json; charset=utf-8').send(e.body);
}

/** Routes every error, and unknown routes, to one JSON shape. */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err, req, reply) => send(reply, req, err, log));
  app.setNotFoundHandler((req, reply) => send(reply, req, new HubError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`), log));
}

/** fastify's `frameworkErrors`: a malformed URL or an over-long path parameter, before any route runs. */
export function frameworkErrorHandler(log: Logger) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => send(reply, req, err, log);
}

/** Writes an error answer straight on a socket that fastify never saw, then closes it. */
function answerOnSocket(socket: Duplex, status: number, body: ApiErrorBody): void {
  const text = JSON.stringify(body);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
    );
  }
  socket.destroy();
}

/**
 * Requests Node's HTTP parser rejects (an unknown method, broken headers, headers too large)
 * never reach fastify: answer them in the same JSON shape, then close the connection.
 */
export function clientErrorHandler(log: Logger) {
  return (err: Error & { code?: string }, socket: Duplex): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    log.debug({ err }, 'HTTP client error');
    answerOnSocket(socket, status, { code: CODE_OF_HTTP_STATUS[status]!, message: `the HTTP request cannot be parsed (${err.code ?? err.message})` });
  };
}

/** CONNECT requests go to the server's 'connect' event, not to fastify; without a listener Node drops them unanswered. */
export function refuseConnect(server: Server): void {
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    answerOnSocket(socket, 404, { code: 'NOT_FOUND', message: `no route CONNECT ${req.url ?? ''}` });
  });
}
