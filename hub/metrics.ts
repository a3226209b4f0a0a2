import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Orm } from './db/orm.js';

/**
 * The hub's Prometheus metrics, one registry per hub (tests run several hubs in a process).
 * Counts of agents, jobs, executions and bytes are read from the database at each scrape, so
 * they are the same numbers REST shows, on every hub; what only this hub sees (latencies,
 * durations, its reconciler, its stream clients, its connection pool) it counts itself.
 */
export class HubMetrics {
  readonly registry = new Registry();
  /** Times the reconciler found what the event path had missed. A correct hub keeps it at zero. */
  readonly reconcilerFixes = new Counter({
    name: 'backhaul_reconciler_fixes_total',
    help: 'Executions the periodic reconciler had to settle or correct because the event path missed them',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  /** Jobs the monitor ended for silence, by reason. */
  readonly jobsEndedBySilence = new Counter({
    name: 'backhaul_monitor_jobs_ended_total',
    help: 'Jobs the monitor ended because their agent was lost, they stalled or timed out',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly backupDuration = new Histogram({
    name: 'backhaul_backup_duration_seconds',
    help: 'Time from start to commit of backups that succeeded, committed by this hub',
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200],
    registers: [this.registry],
  });
  readonly runNowLatency = new Histogram({
    name: 'backhaul_run_now_latency_seconds',
    help: 'Time this hub took to answer a run-now (execution and jobs created)',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly eventStreamClients = new Gauge({
    name: 'backhaul_event_stream_clients',
    help: 'Clients of GET /api/v1/events connected to this hub',
    registers: [this.registry],
  });

  constructor(orm: Orm) {
    collectDefaultMetrics({ register: this.registry });
    const db = () => orm.em.fork();
    new Gauge({
      name: 'backhaul_agents_online',
      help: 'Agents the database shows online',
      registers: [this.registry],
      async collect() {
        const [r] = await db().execute<{ n: string }[]>('select count(*) as n from agents where online');
        this.set(Number(r!.n));
      },
    });
    new Gauge({
      name: 'backhaul_jobs',
      help: 'Jobs by kind and status, from the database',
      labelNames: ['kind', 'status'] as const,
      registers: [this.registry],
      async collect() {
        const rows = await db().execute<{ kind: string; status: string; n: string }[]>('select kind, status, count(*) as n from jobs group by kind, status');
        this.reset();
        for (const r of rows) this.set({ kind: r.kind, status: r.status }, Number(r.n));
      },
    });
    new Gauge({
      name: 'backhaul_executions',
      help: 'Executions by status, from the database',
      labelNames: ['status'] as const,
      registers: [this.registry],
      async collect() {
        const rows = await db().execute<{ status: string; n: string }[]>('select status, count(*) as n from executions group by status');
        this.reset();
        for (const r of rows) this.set({ status: r.status }, Number(r.n));
      },
    });
    new Gauge({
      name: 'backhaul_transferred_bytes',
      help: 'Plaintext bytes of new chunks stored by all backup jobs, from the database (never decreases)',
      registers: [this.registry],
      async collect() {
        const [r] = await db().execute<{ n: number | null }[]>(`select sum(coalesce((progress->>'bytesTransferred')::float8, 0)) as n from jobs where kind = 'backup'`);
        this.set(Number(r!.n ?? 0));
      },
    });
    new Gauge({
      name: 'backhaul_db_pool_connections',
      help: "This hub's PostgreSQL connections, by state",
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const pool = (orm.em.getConnection().getKnex().client as { pool?: { numUsed(): number; numFree(): number; numPendingAcquires(): number } }).pool;
        if (!pool) return;
        this.set({ state: 'used' }, pool.numUsed());
        this.set({ state: 'free' }, pool.numFree());
        this.set({ state: 'pending' }, pool.numPendingAcquires());
      },
    });
  }
}
