import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Server } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProto } from 'grpc-health-check';

const PROTO_FILES = ['backhaul/v1/admin.proto', 'backhaul/v1/agent.proto', 'backhaul/v1/data.proto'];
export const ADMIN_SERVICE_NAME = 'backhaul.v1.AdminService';

/** The buf module's root: the nearest `proto/` above this file, whether it runs from hub/ or dist/hub/. */
function protoRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'proto', PROTO_FILES[0]!))) return join(dir, 'proto');
  }
  throw new Error('cannot find the proto/ directory for gRPC reflection');
}

/**
 * What lets generic gRPC tools (grpcurl, grpc_health_probe, load balancers) talk to the hub:
 * server reflection over the hub's own .proto files, and grpc.health.v1. Both need no token:
 * they reveal nothing the published protos do not.
 */
export function addDiscoveryServices(server: Server): HealthImplementation {
  const root = protoRoot();
  // The health service's own proto too, so tools find it through reflection.
  const pkg = loadSync([...PROTO_FILES.map((f) => join(root, f)), healthProto], { includeDirs: [root, dirname(healthProto)] });
  new ReflectionService(pkg).addToServer(server);
  const health = new HealthImplementation({ '': 'SERVING', [ADMIN_SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);
  return health;
}
