import { once } from 'node:events';
import { pino } from 'pino';
import { HubConnection } from '../../agent/connection.js';
import type { AgentCredentials } from '../../agent/state.js';
import type { Logger } from '../../shared/logger.js';

/**
 * Simulated agents are the real agent's control-stream code (agent/connection.ts) with an
 * empty inventory: Hello with the enrolled id, wait for HelloAck, heartbeat at the interval
 * HelloAck names, acknowledge commands, reconnect with backoff. Each has its own client
 * certificate, so each gets its own channel and its own TLS connection.
 */
const simLog: Logger = pino({ level: process.env.BENCH_AGENT_LOG_LEVEL ?? 'error', base: { component: 'bench-agent' } }, pino.destination(2));

/** Agent defaults (agent/config.ts), so reconnects behave as in the field. */
const CONNECTION_DEFAULTS = { maxConcurrentJobs: 2, drivers: [] as string[], reconnectBaseMs: 500, reconnectCapMs: 30_000 };

export class SimulatedAgent {
  readonly connection: HubConnection;
  /** Times HelloAck arrived; more than one means the agent had to reconnect. */
  connects = 0;

  constructor(
    readonly credentials: AgentCredentials,
    hubAddress: string,
  ) {
    this.connection = new HubConnection(credentials, { ...CONNECTION_DEFAULTS, hub: hubAddress, inventory: async () => [] }, simLog);
    this.connection.on('connected', () => (this.connects += 1));
  }

  /** Starts the stream and resolves at HelloAck; rejects if the first attempt fails or times out. */
  async connect(timeoutMs = 30_000): Promise<void> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    const connected = once(this.connection, 'connected', { signal: ac.signal });
    const failed = once(this.connection, 'disconnected', { signal: ac.signal }).then(([o]: { code: number | null; details: string }[]) => {
      throw new Error(`agent ${this.credentials.identity.agentId} could not connect: code ${o!.code} ${o!.details}`);
    });
    this.connection.start();
    try {
      await Promise.race([connected, failed]);
    } catch (err) {
      if (ac.signal.aborted) throw new Error(`agent ${this.credentials.identity.agentId}: no HelloAck within ${timeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  }

  stop(): Promise<void> {
    return this.connection.stop();
  }
}

/** Many simulated agents against one server (the hub, or the bare peer). */
export class SimulatedFleet {
  readonly agents: SimulatedAgent[];

  constructor(credentials: AgentCredentials[], hubAddress: string) {
    this.agents = credentials.map((c) => new SimulatedAgent(c, hubAddress));
  }

  /** Connects every agent, `concurrency` handshakes at a time; resolves when all have their HelloAck. */
  async connectAll(concurrency = 32): Promise<{ seconds: number }> {
    const started = performance.now();
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < this.agents.length; i = next++) await this.agents[i]!.connect();
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { seconds: (performance.now() - started) / 1000 };
  }

  /** HelloAcks beyond the first of each agent: reconnects after a lost stream. */
  get reconnects(): number {
    return this.agents.reduce((n, a) => n + Math.max(0, a.connects - 1), 0);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.agents.map((a) => a.stop()));
  }
}
