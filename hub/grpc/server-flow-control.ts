import type { ServerHttp2Session } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import type { Logger } from '../../shared/logger.js';

/**
 * Raises the HTTP/2 receive windows of a grpc-js server. grpc-js 1.14.7 gives servers no option
 * for them (grpc/grpc-node#3058 adds `grpc-node.flow_control_window`), so every upload of a 4 MiB
 * chunk crosses HTTP/2's default 64 KiB window: the agent sends a window's worth, then waits a
 * round trip through both event loops for the next. Measured with `npm run bench -- data-plane`
 * on a quiet machine: a 16 MiB window took the full backup from 12.5 s to 8.7 s.
 *
 * It reaches two private fields of grpc-js's Server, which is why the version is pinned exactly:
 * `commonServerOptions` (the options every http2 server it creates gets: the per-stream window
 * goes in its SETTINGS) before bind, and `http2Servers` after (each new session's connection
 * window). If a grpc-js upgrade renames them, this logs a warning and the windows stay at the
 * default: slower, never wrong.
 */
export function raiseWindowsBeforeBind(server: Server, bytes: number, log: Logger): void {
  const internals = server as unknown as { commonServerOptions?: { settings?: Record<string, unknown> } };
  if (!internals.commonServerOptions) {
    log.warn('grpc-js internals changed: the HTTP/2 stream window stays at its default');
    return;
  }
  internals.commonServerOptions.settings = { ...internals.commonServerOptions.settings, initialWindowSize: bytes };
}

export function raiseWindowsAfterBind(server: Server, bytes: number, log: Logger): void {
  const servers = (server as unknown as { http2Servers?: Map<{ on(event: 'session', fn: (s: ServerHttp2Session) => void): void }, unknown> }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) {
    log.warn('grpc-js internals changed: the HTTP/2 connection window stays at its default');
    return;
  }
  for (const h of servers.keys()) h.on('session', (s) => s.setLocalWindowSize(bytes));
}
