/**
 * The transport floor for the Hello benchmark, run as its own process like the hub: a bare
 * grpc-js server with the hub's TLS setup (CA-signed server certificate, client certificates
 * requested, the same keepalive options) that answers the first frame of each Connect stream
 * with a HelloAck. No session, no database: what is left is gRPC, HTTP/2 and TLS.
 *
 * Input: BENCH_PEER_TLS = JSON {caPem, certChainPem, keyPem}. Prints {"port": N} when
 * listening, and {"clientCerts": N, "streams": N} (distinct client certificates and streams
 * so far) on SIGUSR2. A TLS connection carries one client certificate, so when every agent
 * connects once, distinct certificates count distinct connections. Stops on SIGTERM, or when its stdin closes.
 */
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { hubServerCredentials } from '../../hub/grpc/credentials.js';
import { AgentServiceService, type ConnectRequest, type ConnectResponse } from '../../shared/gen/backhaul/v1/agent.js';
import { serverKeepalive } from '../../shared/grpc-options.js';

const tls = JSON.parse(process.env.BENCH_PEER_TLS ?? 'null') as { caPem: string; certChainPem: string; keyPem: string } | null;
if (!tls) throw new Error('BENCH_PEER_TLS is not set');

const clientCerts = new Set<string>();
let streams = 0;

const server = new Server(serverKeepalive);
server.addService(AgentServiceService, {
  enroll: (_call: unknown, cb: (err: Error) => void) => cb(new Error('not served by the bare peer')),
  connect(call: ServerDuplexStream<ConnectRequest, ConnectResponse>) {
    streams += 1;
    const cn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN;
    if (typeof cn === 'string') clientCerts.add(cn);
    call.once('data', (req: ConnectRequest) => {
      if (req.frame?.$case !== 'hello') return call.end();
      call.write({ frame: { $case: 'helloAck', value: { hubId: 'bare-peer', sessionEpoch: 1, heartbeatIntervalMs: 10_000 } } });
    });
    call.on('end', () => call.end());
    call.on('error', () => {});
  },
});

const creds: ServerCredentials = hubServerCredentials(tls.caPem, tls.certChainPem, tls.keyPem);
server.bindAsync('127.0.0.1:0', creds, (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});

// stdin is a pipe from the benchmark: when it closes, the benchmark is gone, and so is this server.
process.stdin.resume().on('end', () => process.exit(0));
process.on('SIGUSR2', () => process.stdout.write(`${JSON.stringify({ clientCerts: clientCerts.size, streams })}\n`));
process.once('SIGTERM', () => {
  server.forceShutdown();
  process.exit(0);
});
