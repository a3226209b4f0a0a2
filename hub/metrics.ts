import { Counter, Registry } from 'prom-client';

/**
 * The hub's Prometheus metrics, one registry per hub (tests run several hubs in a process).
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
}
