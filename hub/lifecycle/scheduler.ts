import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from '../../shared/logger.js';
import type { FlowSchedule, RetentionPolicy } from '../db/entities/flow.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import type { MaintenanceJobs } from '../jobs/maintenance-jobs.js';
import type { Flows } from './flows.js';
import { nextTick, ticksDue } from './schedule.js';
import { PeriodicPass } from './periodic-pass.js';

export interface SchedulerSettings {
  /** Period of the scheduler's pass: due flow ticks, retention, the GC schedule. */
  schedulerIntervalMs: number;
  /** A tick found later than this after its time was missed (the hub was down): it becomes a catch-up run. */
  catchUpAfterMs: number;
  /** Cron expression (UTC) of garbage collection; empty: never on a schedule. */
  gcSchedule: string;
  /** Chunks younger than this are never collected: a backup in flight may be about to name them. */
  gcGraceMs: number;
}

/** Why a tick did not start a run; anything else rolls the tick back, to be tried again. */
const SKIPS = new Set(['FLOW_ALREADY_RUNNING', 'FLOW_HAS_NO_TARGETS']);

/**
 * Time for the lifecycle, run by every hub; the database decides who does what:
 * - a flow's tick runs in one transaction that holds the flow's row, records the tick (its
 *   primary key is (flow, tick), so a second hub's insert does nothing) and starts the run, or
 *   records why it was skipped; then it sets the next tick. Ticks missed while no hub ran give
 *   one catch-up run, recorded as such, with the number missed;
 * - after an execution succeeded (or partly), its flow's retention prunes each target it
 *   backed up, as hub jobs; a claim on the execution row makes that happen once;
 * - garbage collection runs at the ticks of its own schedule, once per tick across hubs.
 */
export class Scheduler {
  private readonly periodic: PeriodicPass;
  private nextGcAt: Date | null = null;

  constructor(
    private readonly orm: Orm,
    private readonly flows: Flows,
    private readonly maintenance: MaintenanceJobs,
    private readonly settings: SchedulerSettings,
    private readonly log: Logger,
    /** Wakes the dispatcher after a run was started. */
    private readonly started: () => void,
  ) {
    this.periodic = new PeriodicPass(this.settings.schedulerIntervalMs, () => this.pass(), log, 'scheduler pass');
  }

  start(): void {
    this.nextGcAt = this.settings.gcSchedule ? nextTick({ cron: this.settings.gcSchedule, timezone: 'UTC' }, new Date()) : null;
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }


  async pass(now = new Date()): Promise<void> {
    const due = await this.orm.em
      .fork()
      .execute<{ id: string }[]>(`select id from flows where enabled and schedule is not null and next_run_at <= ? order by next_run_at limit 100`, [now]);
    for (const f of due) await this.fire(f.id, now);
    await this.applyRetention();
    await this.collectGarbageWhenDue(now);
  }

  private async fire(flowId: string, now: Date): Promise<void> {
    const fired = await this.orm.em.fork().transactional(async (tx) => {
      const rows = await tx.execute<{ enabled: boolean; schedule: FlowSchedule | null; next_run_at: Date | null }[]>(
        'select enabled, schedule, next_run_at from flows where id = ? for update',
        [flowId],
      );
      const f = rows[0];
      // Another hub fired it meanwhile, or it was changed: the row now says what is next.
      if (!f?.enabled || !f.schedule || !f.next_run_at || new Date(f.next_run_at) > now) return null;
      const at = new Date(f.next_run_at);
      const missed = ticksDue(f.schedule, at, now);
      const catchUp = missed > 1 || now.getTime() - at.getTime() > this.settings.catchUpAfterMs;
      const claimed = await tx.execute(
        `insert into flow_ticks (flow_id, tick_at, outcome, missed_ticks, recorded_at) values (?, ?, ?, ?, now()) on conflict do nothing returning flow_id`,
        [flowId, at, catchUp ? 'catch_up' : 'started', catchUp ? missed : 0],
      );
      let outcome: { executionId: string } | { skipped: string } | null = null;
      if (claimed.length > 0) outcome = await this.runTick(tx, flowId, at, catchUp);
      await tx.execute('update flows set next_run_at = ? where id = ?', [nextTick(f.schedule, now), flowId]);
      return outcome && { at, catchUp, missed, ...outcome };
    });
    if (!fired) return;
    const log = this.log.child({ flow_id: flowId, tick_at: fired.at.toISOString() });
    if ('skipped' in fired) log.info({ reason: fired.skipped }, 'scheduled tick skipped');
    else {
      log.info({ execution_id: fired.executionId, catch_up: fired.catchUp, missed_ticks: fired.missed }, fired.catchUp ? 'caught up missed ticks with one run' : 'scheduled run started');
      this.started();
    }
  }

  /** Starts the tick's run in a savepoint; a refusal that means "not now" is recorded as a skip. */
  private async runTick(tx: EntityManager, flowId: string, at: Date, catchUp: boolean): Promise<{ executionId: string } | { skipped: string }> {
    try {
      const executionId = await tx.transactional((sp) => this.flows.runIn(sp, flowId, 'scheduled', { at, catchUp }));
      await tx.execute('update flow_ticks set execution_id = ? where flow_id = ? and tick_at = ?', [executionId, flowId, at]);
      return { executionId };
    } catch (err) {
      if (!(err instanceof HubError) || !SKIPS.has(err.code)) throw err;
      await tx.execute(`update flow_ticks set outcome = 'skipped', reason = ?, execution_id = ? where flow_id = ? and tick_at = ?`, [
        `${err.code}: ${err.message}`,
        (err.details as { execution_id?: string } | undefined)?.execution_id ?? null,
        flowId,
        at,
      ]);
      return { skipped: err.code };
    }
  }

  /** Prunes, by its flow's policy, every target an ended execution backed up; once per execution. */
  private async applyRetention(): Promise<void> {
    const em = this.orm.em.fork();
    const due = await em.execute<{ id: string; retention: RetentionPolicy; schedule: FlowSchedule | null }[]>(
      `select e.id, f.retention, f.schedule from executions e join flows f on f.id = e.flow_id
        where e.retention_started_at is null and e.status in ('succeeded', 'partial') and f.retention is not null
        order by e.completed_at limit 20`,
    );
    for (const e of due) {
      const claimed = await em.execute('update executions set retention_started_at = now() where id = ? and retention_started_at is null returning id', [e.id]);
      if (claimed.length === 0) continue; // another hub has it
      const targets = await em.execute<{ agent_id: string; target_id: string }[]>(
        `select distinct agent_id, target_id from jobs where execution_id = ? and kind = 'backup' and status = 'succeeded'`,
        [e.id],
      );
      for (const t of targets) {
        const { job, done } = await this.maintenance.startPrune(t.agent_id, t.target_id, e.retention, e.schedule?.timezone, e.id);
        this.log.info({ execution_id: e.id, job_id: job.id, agent_id: t.agent_id, target: t.target_id }, 'retention: prune started');
        done.catch((err: unknown) => this.log.error({ err, job_id: job.id }, 'prune ended with an error'));
      }
    }
  }

  private async collectGarbageWhenDue(now: Date): Promise<void> {
    if (!this.nextGcAt || this.nextGcAt > now) return;
    const at = this.nextGcAt;
    this.nextGcAt = nextTick({ cron: this.settings.gcSchedule, timezone: 'UTC' }, now);
    const em = this.orm.em.fork();
    const claimed = await em.execute(`insert into maintenance_ticks (kind, tick_at, recorded_at) values ('gc', ?, now()) on conflict do nothing returning kind`, [at]);
    if (claimed.length === 0) return;
    const { job, done } = await this.maintenance.startGc(this.settings.gcGraceMs);
    await em.execute(`update maintenance_ticks set job_id = ? where kind = 'gc' and tick_at = ?`, [job.id, at]);
    this.log.info({ job_id: job.id, tick_at: at.toISOString() }, 'scheduled garbage collection started');
    done.catch((err: unknown) => this.log.error({ err, job_id: job.id }, 'garbage collection ended with an error'));
  }
}
