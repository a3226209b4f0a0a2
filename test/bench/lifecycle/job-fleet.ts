import { once, setMaxListeners } from 'node:events';
import { pino } from 'pino';
import { HubConnection } from '../../../agent/connection.js';
import { DataClient } from '../../../agent/data-client.js';
import type { AgentCredentials } from '../../../agent/state.js';
import type { Target } from '../../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../../shared/logger.js';
import { SIM_DISK, SimulatedJobs, type FinalTiming } from './simulated-jobs.js';

const simLog: Logger = pino({ level: process.env.BENCH_AGENT_LOG_LEVEL ?? 'error', base: { component: 'bench-agent' } }, pino.destination(2));

export interface JobFleetOptions {
  hubAddress: string;
  targetsPerAgent: number;
  durationMs: number;
  progressIntervalMs: number;
  onFinalAcked: (t: FinalTiming) => void;
  onError: (err: unknown) => void;
}

/** The inventory of one simulated agent: `n` one-disk targets of the file driver. */
export function simulatedInventory(n: number): Target[] {
  return Array.from({ length: n }, (_, i) => ({ id: `vm${i}`, name: `simulated vm ${i}`, driver: 'file', disks: [{ name: SIM_DISK.name, path: `/dev/null`, sizeBytes: SIM_DISK.sizeBytes }] }));
}

/**
 * Simulated agents that run jobs: the real agent's control stream (agent/connection.ts) and data
 * client (agent/data-client.ts), with SimulatedJobs in place of the block pipeline. Each agent
 * declares as many concurrent jobs as it has targets.
 */
export class JobFleet {
  readonly agents: { connection: HubConnection; data: DataClient; jobs: SimulatedJobs; connects: number }[];

  constructor(credentials: AgentCredentials[], o: JobFleetOptions) {
    const inventory = simulatedInventory(o.targetsPerAgent);
    this.agents = credentials.map((creds) => {
      const data = new DataClient(o.hubAddress, creds);
      let connection: HubConnection | null = null;
      const jobs = new SimulatedJobs({
        data,
        send: (ev) => connection?.sendEvent(ev) ?? false,
        maxConcurrentJobs: o.targetsPerAgent,
        durationMs: o.durationMs,
        progressIntervalMs: o.progressIntervalMs,
        onFinalAcked: o.onFinalAcked,
        onError: o.onError,
      });
      connection = new HubConnection(
        creds,
        { hub: o.hubAddress, maxConcurrentJobs: o.targetsPerAgent, drivers: ['file'], reconnectBaseMs: 500, reconnectCapMs: 30_000, inventory: async () => inventory, jobs },
        simLog,
      );
      const agent = { connection, data, jobs, connects: 0 };
      connection.on('connected', () => (agent.connects += 1));
      return agent;
    });
  }

  /** Starts every agent's stream and resolves when all have had their HelloAck. */
  async connectAll(timeoutMs = 60_000): Promise<void> {
    const ac = new AbortController();
    setMaxListeners(this.agents.length + 1, ac.signal); // one listener per agent is expected
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      await Promise.all(
        this.agents.map((a) => {
          const connected = once(a.connection, 'connected', { signal: ac.signal });
          a.connection.start();
          return connected;
        }),
      );
    } catch (err) {
      if (ac.signal.aborted) throw new Error(`not every simulated agent had its HelloAck within ${timeoutMs} ms`);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get reconnects(): number {
    return this.agents.reduce((n, a) => n + Math.max(0, a.connects - 1), 0);
  }

  async stopAll(): Promise<void> {
    for (const a of this.agents) a.jobs.stop();
    await Promise.all(this.agents.map((a) => a.connection.stop()));
    for (const a of this.agents) a.data.close();
  }
}
