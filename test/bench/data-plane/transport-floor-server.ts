/**
 * The hub's end of the transport floor (cpu-floor.ts), in a process of its own like the hub:
 * a grpc-js server with the hub's gRPC settings (keepalive, message limits, the raised HTTP/2
 * windows, the hub's TLS credentials and its DataService codec) whose UploadChunks acknowledges
 * each chunk as it arrives and stores nothing. What it costs is what moving the bytes costs.
 *
 * Started with child_process.fork. The parent sends { caPem, certChainPem, keyPem, windowBytes };
 * this process answers { port }, then { cpuSeconds } (its CPU so far) each time it is sent 'cpu'.
 */
import { Server, type ServerDuplexStream } from '@grpc/grpc-js';
import { hubServerCredentials } from '../../../hub/grpc/credentials.js';
import { dataServiceDefinition, DATA_MAX_MESSAGE_BYTES } from '../../../hub/grpc/data-service.js';
import { raiseWindowsAfterBind, raiseWindowsBeforeBind } from '../../../hub/grpc/server-flow-control.js';
import type { UploadChunksRequest, UploadChunksResponse } from '../../../shared/gen/backhaul/v1/data.js';
import { serverKeepalive } from '../../../shared/grpc-options.js';
import { createLogger } from '../../../shared/logger.js';

export interface FloorServerSetup {
  caPem: string;
  certChainPem: string;
  keyPem: string;
  windowBytes: number;
}

async function serve(setup: FloorServerSetup): Promise<void> {
  const log = createLogger('transport-floor', 'warn');
  const server = new Server({ ...serverKeepalive, 'grpc.max_receive_message_length': DATA_MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': DATA_MAX_MESSAGE_BYTES });
  raiseWindowsBeforeBind(server, setup.windowBytes, log);
  server.addService(dataServiceDefinition, {
    uploadChunks(call: ServerDuplexStream<UploadChunksRequest, UploadChunksResponse>) {
      call.on('data', (req: UploadChunksRequest) => call.write({ digest: req.digest, created: true, storeBusyMs: 0 }));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', hubServerCredentials(setup.caPem, setup.certChainPem, setup.keyPem), (err, p) => (err ? reject(err) : resolve(p))),
  );
  raiseWindowsAfterBind(server, setup.windowBytes, log);
  process.send!({ port });
}

if (!process.send) throw new Error('transport-floor-server must be started with child_process.fork');
process.on('disconnect', () => process.exit(0));
process.on('message', (m: FloorServerSetup | 'cpu') => {
  if (m === 'cpu') {
    const c = process.cpuUsage();
    process.send!({ cpuSeconds: (c.user + c.system) / 1e6 });
    return;
  }
  serve(m).catch((err: unknown) => {
    process.stderr.write(`transport-floor-server failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
});
