/**
 * An experiment, off unless BENCH_DP_WINDOW_MIB is set: raises the HTTP/2 flow-control windows
 * of the process it is loaded into, to measure what Backhaul would gain from doing so itself.
 *
 * - In the hub (hub-host.ts calls raiseServerWindows before Hub.start): grpc-js 1.14 gives a
 *   server no option for its receive window (grpc-node PR #3058 adds `grpc-node.flow_control_window`
 *   on the server), so every upload crosses a 64 KiB window: the agent sends ~32-48 KiB, then
 *   waits a round trip through both event loops for WINDOW_UPDATE. Here the per-stream window
 *   goes into the server's SETTINGS and the connection window is raised on each session.
 * - In the agent (loaded with `node --import`): the same for the client side, what the
 *   DataClient's channel option `'grpc-node.flow_control_window'` (supported by grpc-js 1.14 on
 *   clients) would do for restores.
 *
 * Both patch the `http2` module object that grpc-js calls at connect and bind time.
 */
import http2 from 'node:http2';

export function windowBytesFromEnv(): number | null {
  const mib = Number(process.env.BENCH_DP_WINDOW_MIB ?? 0);
  return mib > 0 ? Math.floor(mib * 1024 * 1024) : null;
}

export function raiseServerWindows(bytes: number): void {
  const create = http2.createSecureServer;
  (http2 as { createSecureServer: typeof create }).createSecureServer = ((opts: http2.SecureServerOptions, ...rest: unknown[]) => {
    const server = (create as (...a: unknown[]) => http2.Http2SecureServer)({ ...opts, settings: { ...opts.settings, initialWindowSize: bytes } }, ...rest);
    server.on('session', (s: http2.ServerHttp2Session) => s.setLocalWindowSize(bytes));
    return server;
  }) as typeof create;
}

export function raiseClientWindows(bytes: number): void {
  const connect = http2.connect;
  (http2 as { connect: typeof connect }).connect = ((authority: string, options?: http2.SecureClientSessionOptions, listener?: () => void) => {
    const session = connect(authority, { ...options, settings: { ...options?.settings, initialWindowSize: bytes } }, listener);
    session.once('remoteSettings', () => session.setLocalWindowSize(bytes));
    return session;
  }) as typeof connect;
}

// Loaded with --import into the agent: patch at once.
if (process.argv.some((a) => a.endsWith('agent/main.js'))) {
  const bytes = windowBytesFromEnv();
  if (bytes) raiseClientWindows(bytes);
}
