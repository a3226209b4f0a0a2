import { readFile } from 'node:fs/promises';
import { credentials, Metadata, type handleUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { AdminServiceClient, type AdminServiceServer } from '../../shared/gen/backhaul/v1/admin.js';
import { HUB_TLS_NAME } from '../../shared/grpc-options.js';
import { configPath, readConfig } from './config-file.js';
import { CliError, cliErrorOf, EXIT } from './exit-codes.js';

/** The global flags every command takes. */
export interface ConnectionFlags {
  hub?: string;
  token?: string;
  ca?: string;
}

export interface Connection {
  hub: string;
  token: string;
  caPem: string;
}

/**
 * Flags first, then BACKHAUL_HUB / BACKHAUL_TOKEN / BACKHAUL_CA, then the file `login` wrote.
 * Each part is taken from the first place that has it, so a flag can override one field of a login.
 */
export async function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  const stored = await readConfig();
  const hub = flags.hub ?? env.BACKHAUL_HUB ?? stored.hub;
  const token = flags.token ?? env.BACKHAUL_TOKEN ?? stored.token;
  const caFile = flags.ca ?? env.BACKHAUL_CA;
  if (!hub) throw new CliError(EXIT.USAGE, 'no hub given: pass --hub HOST:PORT, set BACKHAUL_HUB, or run backhaulctl login');
  if (!token) throw new CliError(EXIT.BAD_TOKEN, 'no API token given: pass --token, set BACKHAUL_TOKEN, or run backhaulctl login');
  const caPem = caFile ? await readCa(caFile) : stored.ca_pem;
  if (!caPem) throw new CliError(EXIT.USAGE, `no CA to trust the hub with: pass --ca FILE (print it with "backhaul-hub ca"), set BACKHAUL_CA, or run backhaulctl login (looked in ${configPath()})`);
  return { hub, token, caPem };
}

export async function readCa(file: string): Promise<string> {
  try {
    const pem = await readFile(file, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('it holds no PEM certificate');
    return pem;
  } catch (err) {
    throw new CliError(EXIT.USAGE, `cannot use ${file} as the hub's CA: ${(err as Error).message}`);
  }
}

type Unary = {
  [K in keyof AdminServiceServer as AdminServiceServer[K] extends handleUnaryCall<any, any> ? K : never]: AdminServiceServer[K] extends handleUnaryCall<infer Req, infer Res> ? { req: Req; res: Res } : never;
};
type UnaryName = keyof Unary & string;

const CALL_DEADLINE_MS = 20_000;

/** The AdminService over TLS that trusts only the hub's CA, with the token in every call's metadata. */
export class AdminClient {
  readonly client: AdminServiceClient;
  private readonly metadata = new Metadata();

  constructor(readonly conn: Connection) {
    this.client = new AdminServiceClient(conn.hub, credentials.createSsl(Buffer.from(conn.caPem)), {
      // The hub's certificate carries its fixed name, whatever address it is dialled at.
      'grpc.ssl_target_name_override': HUB_TLS_NAME,
      'grpc.default_authority': HUB_TLS_NAME,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    this.metadata.set('authorization', `Bearer ${conn.token}`);
  }

  call<K extends UnaryName>(name: K, req: Unary[K]['req']): Promise<Unary[K]['res']> {
    return new Promise((resolve, reject) => {
      const method = (this.client as unknown as Record<string, Function>)[name]!.bind(this.client);
      method(req, this.metadata, { deadline: Date.now() + CALL_DEADLINE_MS }, (err: ServiceError | null, res: Unary[K]['res']) =>
        err ? reject(cliErrorOf(err, this.conn.hub)) : resolve(res),
      );
    });
  }

  /** WatchExecution: each update's execution view, until the hub ends the stream. */
  watch(id: string) {
    return this.client.watchExecution({ id }, this.metadata);
  }

  close(): void {
    this.client.close();
  }
}
