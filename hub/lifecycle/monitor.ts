import type { Logger } from '../../shared/logger.js';
import type { Orm } from '../db/orm.js';
import { appendJobLog } from '../jobs/job-log.js';
import { JobStore } from '../jobs/job-store.js';
import type { JobStatusName } from '../jobs/job-state.js';
import type { HubMetrics } from '../metrics.js';
import { settleExecution } from './execution-settlement.js';
import { judge, type SilenceSettings } from './silence-rules.js';
import { PeriodicPass } from './periodic-pass.js';

export interface MonitorSettings extends SilenceSettings {
  monitorIntervalMs: number;
}

const ms = (d: Date | null): number | null => (d ? new Date(d).getTime() : null);

/**
 * The safety net of DESIGN §1, run by every hub (guarded updates make concurrent sweeps safe):
 * - silence: live jobs of a disconnected agent or without reports are marked stalled, and after
 *   the grace end AGENT_LOST, STALLED or TIMED_OUT; the agent is told to clean up;
 * - reconciliation: an execution still running although all its jobs ended, or whose counters
 *   disagree with its job rows, is settled, logged and counted. That count should stay zero.
 */
export class Monitor {
  readonly startedAt = Date.now();
  private readonly periodic: PeriodicPass;

  constructor(
    private readonly orm: Orm,
    private readonly settings: MonitorSettings,
    private readonly metrics: HubMetrics,
    private readonly log: Logger,
    /** Tells an agent (if this hub holds its stream) to abort a job and clean up. */
    private readonly abortOnAgent: (agentId: string, jobId: string, reason: string) => void,
  ) {
    this.periodic = new PeriodicPass(this.settings.monitorIntervalMs, () => this.sweep(), log, 'monitor sweep');
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }


  async sweep(now = Date.now()): Promise<void> {
    await this.watchSilence(now);
    await this.reconcile();
  }

  private async watchSilence(now: number): Promise<void> {
    const em = this.orm.em.fork();
    const rows = await em.execute<
      {
        id: string;
        status: JobStatusName;
        agent_id: string | null;
        execution_id: string | null;
        created_at: Date;
        dispatched_at: Date | null;
        started_at: Date | null;
        last_event_at: Date | null;
        acked_at: Date | null;
        stalled_at: Date | null;
        online: boolean | null;
        last_seen_at: Date | null;
      }[]
    >(
      `select j.id, j.status, j.agent_id, j.execution_id, j.created_at, j.dispatched_at, j.started_at, j.last_event_at, j.acked_at, j.stalled_at,
              a.online, a.last_seen_at
         from jobs j left join agents a on a.id = j.agent_id
        where j.status in ('queued', 'dispatched', 'running', 'cancelling')`,
    );
    const jobs = new JobStore(em);
    for (const r of rows) {
      const verdict = judge(
        {
          status: r.status,
          agentId: r.agent_id,
          agentOnline: r.online ?? false,
          agentLastSeenAt: ms(r.last_seen_at),
          createdAt: ms(r.created_at)!,
          dispatchedAt: ms(r.dispatched_at),
          startedAt: ms(r.started_at),
          lastEventAt: ms(r.last_event_at),
          ackedAt: ms(r.acked_at),
          stalled: r.stalled_at !== null,
        },
        now,
        this.startedAt,
        this.settings,
      );
      const log = this.log.child({ job_id: r.id, agent_id: r.agent_id, execution_id: r.execution_id });
      if (verdict.action === 'stall') {
        const marked = await em.execute(
          `update jobs set stalled_at = now(), stall_reason = ? where id = ? and stalled_at is null and status in ('queued', 'dispatched', 'running', 'cancelling') returning id`,
          [verdict.reason, r.id],
        );
        if (marked.length > 0) {
          await appendJobLog(em, r.id, 'warn', `stalled: ${verdict.reason}`);
          log.warn({ reason: verdict.reason }, 'job stalled');
        }
      } else if (verdict.action === 'end') {
        const ended = await jobs.transition(r.id, verdict.to, { errorCode: verdict.code, errorMessage: verdict.message });
        if (!ended) continue;
        this.metrics.jobsEndedBySilence.inc({ code: verdict.code });
        log.warn({ status: verdict.to, code: verdict.code, reason: verdict.message }, 'job ended by the monitor');
        if (r.agent_id) this.abortOnAgent(r.agent_id, r.id, `${verdict.code}: ${verdict.message}`);
      }
    }
  }

  /** Settles executions the event path missed. Each one found is a bug elsewhere: it is logged and counted. */
  async reconcile(): Promise<number> {
    const em = this.orm.em.fork();
    const suspects = await em.execute<{ id: string }[]>(
      `select e.id from executions e
        where e.status = 'running'
          and not exists (select 1 from jobs j where j.execution_id = e.id and j.status in ('queued', 'dispatched', 'running', 'cancelling'))
       union
       select e.id from executions e join lateral (
           select count(*) filter (where status = 'succeeded') as s, count(*) filter (where status = 'failed') as f,
                  count(*) filter (where status = 'cancelled') as c, count(*) as t
             from jobs j where j.execution_id = e.id) k on true
        where (e.jobs_succeeded, e.jobs_failed, e.jobs_cancelled, e.jobs_total) <> (k.s, k.f, k.c, k.t)`,
    );
    let fixed = 0;
    for (const { id } of suspects) {
      const s = await em.transactional((tx) => settleExecution(tx, id));
      if (!s.finalized && !s.countersWereStale) continue; // it settled by itself meanwhile
      fixed++;
      const kind = s.finalized ? 'finalized' : 'counters';
      this.metrics.reconcilerFixes.inc({ kind });
      this.log.warn({ execution_id: id, kind, status: s.finalized }, 'reconciler fixed an execution the event path missed');
    }
    return fixed;
  }
}
