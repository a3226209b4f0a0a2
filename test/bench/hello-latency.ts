import type { AgentCredentials } from '../../agent/state.js';
import type { BareHelloPeer } from './bare-hello-peer.js';
import type { BenchHub } from './hub-process.js';
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
 * channel and TLS context) to the HelloAck, then closed. Every client has its own TLS
 * context, which grpc-js never shares a subchannel across: each connect is a fresh TCP and
 * TLS handshake.
 */
async function timeOneConnect(creds: AgentCredentials, address: string): Promise<{ total: number; client: number }> {
  const t0 = performance.now();
  const agent = new SimulatedAgent(creds, address);
  const client = performance.now() - t0;
  try {
    await agent.connect(10_000);
    return { total: performance.now() - t0, client };
  } finally {
    await agent.stop();
  }
}

export interface HelloLatencyResult {
  hub: LatencyStats;
  peer: LatencyStats;
  /** Backhaul minus peer, per interleaved pair: the hub's own share above the transport floor. */
  paired: LatencyStats;
  /** Of each connect, the part spent creating the client (TLS context, channel) in the agent. */
  clientSetupP50: number;
  /**
   * Distinct agents each server accepted a stream from. A TLS connection carries one client
   * certificate (and the hub checks Hello's agent id against it), so with one connect per
   * agent, this equals the connects only if no connection was reused.
   */
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
  hub: BenchHub;
  hubAddress: string;
  peer: BareHelloPeer;
  agents: AgentCredentials[];
  count: number;
  warmup: number;
}): Promise<HelloLatencyResult> {
  const total = o.count + o.warmup;
  if (o.agents.length < total) throw new Error(`need ${total} enrolled agents, have ${o.agents.length}`);
  const hubMs: number[] = [];
  const peerMs: number[] = [];
  const clientMs: number[] = [];
  const connectedBefore = o.hub.lines().filter((l) => l.msg === 'agent connected').length;
  const peerBefore = await o.peer.served();
  const peerAddress = o.peer.address;
  for (let i = 0; i < total; i++) {
    const creds = o.agents[i]!;
    const hubFirst = i % 2 === 0;
    const a = await timeOneConnect(creds, hubFirst ? o.hubAddress : peerAddress);
    const b = await timeOneConnect(creds, hubFirst ? peerAddress : o.hubAddress);
    if (i < o.warmup) continue;
    hubMs.push((hubFirst ? a : b).total);
    peerMs.push((hubFirst ? b : a).total);
    clientMs.push(a.client, b.client);
  }
  const peerAfter = await o.peer.served();
  // The hub logs asynchronously: give its last lines a moment to reach the file.
  const connectedLines = async () => {
    for (let tries = 0; ; tries++) {
      const lines = o.hub.lines().filter((l) => l.msg === 'agent connected').slice(connectedBefore);
      if (lines.length >= total || tries >= 30) return lines;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const hubAgents = new Set((await connectedLines()).map((l) => l.agent_id));
  return {
    hub: summarize(hubMs),
    peer: summarize(peerMs),
    paired: summarize(hubMs.map((h, i) => h - peerMs[i]!)),
    clientSetupP50: percentile(clientMs, 50),
    hubConnections: hubAgents.size,
    peerConnections: peerAfter.clientCerts - peerBefore.clientCerts,
    connects: total,
  };
}
