import { Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { hubClient } from '../../agent/hub-client.js';
import { createKeyAndCsr } from '../../shared/certs.js';
import type { AgentServiceClient, ConnectRequest, ConnectResponse, EnrollResponse, Hello } from '../../shared/gen/backhaul/v1/agent.js';

export interface Enrolled {
  agentId: string;
  keyPem: string;
  certPem: string;
  caPem: string;
}

/** Enrolls through the real Enroll RPC with a fresh key, as the agent does, without the CLI. */
export async function enrollRaw(address: string, caPem: string, token: string, name = 'raw-agent'): Promise<Enrolled> {
  const { keyPem, csrPem } = await createKeyAndCsr(name);
  const client = hubClient(address, caPem);
  try {
    const res = await new Promise<EnrollResponse>((resolve, reject) =>
      client.enroll({ joinToken: token, csrPem, name, hostname: 'test-host' }, (err, r) => (err ? reject(err) : resolve(r))),
    );
    return { agentId: res.agentId, keyPem, certPem: res.certificatePem, caPem: res.caCertificatePem };
  } finally {
    client.close();
  }
}

export interface StreamEnd {
  code: number;
  details: string;
  errorCode: string | undefined;
}

/** A Connect stream driven frame by frame, recording what the hub sends and how it ends. */
export class RawStream {
  readonly received: ConnectResponse[] = [];
  readonly ended: Promise<StreamEnd>;
  readonly call: ClientDuplexStream<ConnectRequest, ConnectResponse>;
  private waiters: { pred: (f: ConnectResponse) => boolean; resolve: (f: ConnectResponse) => void }[] = [];

  constructor(readonly client: AgentServiceClient) {
    this.call = client.connect();
    this.call.on('data', (f: ConnectResponse) => {
      this.received.push(f);
      this.waiters = this.waiters.filter((w) => (w.pred(f) ? (w.resolve(f), false) : true));
    });
    this.ended = new Promise((resolve) => {
      let meta: Metadata | undefined;
      this.call.on('status', (s: { code: number; details: string; metadata: Metadata }) => {
        meta = s.metadata;
        resolve({ code: s.code, details: s.details, errorCode: meta?.get('backhaul-error-code')[0]?.toString() });
      });
      this.call.on('error', (e: ServiceError) => resolve({ code: e.code, details: e.details, errorCode: e.metadata?.get('backhaul-error-code')[0]?.toString() }));
    });
  }

  send(frame: ConnectRequest['frame']): void {
    this.call.write({ frame });
  }

  hello(h: Partial<Hello> & { agentId: string }): void {
    this.send({ $case: 'hello', value: { version: 'test', hostname: 'test-host', capabilities: { drivers: [], maxConcurrentJobs: 1 }, inventory: [], heldJobs: [], ...h } });
  }

  /** The first frame matching pred among those received from index `from` on, waiting if needed. */
  next(pred: (f: ConnectResponse) => boolean, timeoutMs = 10_000, from = 0): Promise<ConnectResponse> {
    const seen = this.received.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no matching frame from the hub')), timeoutMs);
      this.waiters.push({ pred, resolve: (f) => (clearTimeout(t), resolve(f)) });
    });
  }

  helloAck(timeoutMs?: number) {
    return this.next((f) => f.frame?.$case === 'helloAck', timeoutMs);
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

export function rawStream(address: string, e: Pick<Enrolled, 'caPem'> & Partial<Enrolled>): RawStream {
  return new RawStream(hubClient(address, e.caPem, e.keyPem, e.certPem));
}
