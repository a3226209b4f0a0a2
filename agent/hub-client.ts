import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { AgentServiceClient } from '../shared/gen/backhaul/v1/agent.js';
import { clientKeepalive, HUB_TLS_NAME } from '../shared/grpc-options.js';

/**
 * A client for the hub that trusts only the hub's own CA and checks the hub's fixed TLS
 * name instead of the dialled address, so any address of the hub works.
 */
export function hubClient(address: string, caPem: string, clientKeyPem?: string, clientCertPem?: string): AgentServiceClient {
  const creds: ChannelCredentials = credentials.createSsl(
    Buffer.from(caPem),
    clientKeyPem ? Buffer.from(clientKeyPem) : null,
    clientCertPem ? Buffer.from(clientCertPem) : null,
  );
  return new AgentServiceClient(address, creds, {
    ...clientKeepalive,
    'grpc.ssl_target_name_override': HUB_TLS_NAME,
    'grpc.default_authority': HUB_TLS_NAME,
    // Our own backoff drives reconnects; keep the channel's short so it does not add to it.
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 2_000,
    // Disk indexes of large disks travel as one message (16 MiB for 2 TiB).
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
  });
}
