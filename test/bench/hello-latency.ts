import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { AgentCredentials } from '../../agent/state.js';
import { CertificateAuthority } from '../../hub/pki/ca.js';
import { HUB_TLS_NAME } from '../../shared/grpc-options.js';
import { query } from '../support/database.js';
import type { Proc } from '../support/processes.js';
import { ROOT } from '../support/processes.js';
import { SimulatedAgent } from './simulated-agents.js';

export interface LatencyStats {
  samples: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

/** Nearest-rank percentile of unsorted samples. */
export function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summarize(samples: number[]): LatencyStats {
  return {
    samples: samples.length,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    mean: samples.reduce((a, b) => a + b, 0) / samples.length,
    max: Math.max(...samples),
  };
}

/**
 * One agent's connect as the real agent code does it, timed from creating the client (its
 * channel and TLS context) to the HelloAck, then closed. Each agent has its own credentials
 * and so its own subchannel: every connect is a fresh TCP and TLS handshake.
 */
async function timeOneConnect(creds: AgentCredentials, address: string): Promise<number> {
  const t0 = performance.now();
  const agent = new SimulatedAgent(creds, address);
  try {
    await agent.connect(10_000);
    return performance.now() - t0;
  } finally {
    await agent.stop();
  }
}

/** A bare grpc-js Hello server in its own process, trusting the hub's CA; see bare-hello-server.ts. */
export class BareHelloServer {
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    private readonly pending: { waiters: ((line: string) => void)[] },
  ) {}

  static async start(databaseUrl: string): Promise<BareHelloServer> {
    const [row] = await query<{ cert_pem: string; key_pem: string }>(databaseUrl, 'select cert_pem, key_pem from ca_material where id = 1');
    const ca = await CertificateAuthority.load(row!.cert_pem, row!.key_pem);
    const { certChainPem, keyPem } = await ca.issueServerCert([HUB_TLS_NAME, 'localhost', '127.0.0.1']);
    const child = spawn(process.execPath, [join(ROOT, 'dist/test/bench/bare-hello-server.js')], {
      env: { ...process.env, BENCH_PEER_TLS: JSON.stringify({ caPem: ca.certPem, certChainPem, keyPem }) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const pending: { waiters: ((line: string) => void)[] } = { waiters: [] };
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        pending.waiters.shift()?.(line);
      }
    });
    const first = await new Promise<string>((resolve, reject) => {
      pending.waiters.push(resolve);
      child.once('exit', (code) => reject(new Error(`bare Hello server exited (${code}) before listening`)));
    });
    return new BareHelloServer(child, (JSON.parse(first) as { port: number }).port, pending);
  }

  /** Stops the server and returns how many TLS connections and streams it served. */
  async stop(): Promise<{ connections: number; streams: number }> {
    const last = new Promise<string>((resolve) => this.pending.waiters.push(resolve));
    this.child.kill('SIGTERM');
    return JSON.parse(await last) as { connections: number; streams: number };
  }
}

export interface HelloLatencyResult {
  hub: LatencyStats;
  peer: LatencyStats;
  /** Distinct client addresses each server saw: equal to the connects when every one was a fresh connection. */
  hubConnections: number;
  peerConnections: number;
  connects: number;
}

/**
 * Times `count` sequential connects to the hub and as many to the bare peer, interleaved
 * (hub, peer, peer, hub, ...) so drift on this shared machine hits both alike. The first
 * `warmup` of each are not counted. Each connect uses a different enrolled agent.
 */
export async function measureHelloLatency(o: {
  hub: Proc;
  hubAddress: string;
  databaseUrl: string;
  agents: AgentCredentials[];
  count: number;
  warmup: number;
}): Promise<HelloLatencyResult> {
  const total = o.count + o.warmup;
  if (o.agents.length < total) throw new Error(`need ${total} enrolled agents, have ${o.agents.length}`);
  const peer = await BareHelloServer.start(o.databaseUrl);
  const hubMs: number[] = [];
  const peerMs: number[] = [];
  const connectedBefore = o.hub.count('agent connected');
  let peerServed: { connections: number; streams: number };
  try {
    const peerAddress = `127.0.0.1:${peer.port}`;
    for (let i = 0; i < total; i++) {
      const creds = o.agents[i]!;
      const hubFirst = i % 2 === 0;
      const a = await timeOneConnect(creds, hubFirst ? o.hubAddress : peerAddress);
      const b = await timeOneConnect(creds, hubFirst ? peerAddress : o.hubAddress);
      if (i < o.warmup) continue;
      hubMs.push(hubFirst ? a : b);
      peerMs.push(hubFirst ? b : a);
    }
  } finally {
    peerServed = await peer.stop();
  }
  const hubPeers = new Set(
    o.hub.lines
      .filter((l) => l.msg === 'agent connected')
      .slice(connectedBefore)
      .map((l) => l.peer),
  );
  return { hub: summarize(hubMs), peer: summarize(peerMs), hubConnections: hubPeers.size, peerConnections: peerServed.connections, connects: total };
}
