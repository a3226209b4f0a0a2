import type { Logger } from '../../shared/logger.js';
import type { SessionRegistry } from '../agents/registry.js';
import type { Job } from '../db/entities/job.js';
import type { Orm } from '../db/orm.js';
import { appendJobLog } from '../jobs/job-log.js';
import { startCommandOf } from '../jobs/job-service.js';
import { jobFromRow, JobStore } from '../jobs/job-store.js';

export interface DispatchSettings {
  /** How long an agent has to acknowledge a command before it is re-sent. */
  ackTimeoutMs: number;
  /** Sends of one start command before the job fails with DISPATCH_FAILED. */
  maxDispatchAttempts: number;
  /** Period of the dispatch pass; it also runs whenever something changes on this hub. */
  dispatchIntervalMs: number;
}

type Row = Record<string, unknown>;

/**
 * Sends jobs to the agents whose streams this hub holds. Each pass, per agent:
 * - queued jobs start, oldest first, while the agent runs fewer than its declared maximum;
 * - a start command not acknowledged within the ack timeout is re-sent with the same command
 *   id (the agent acts on an id once), and after the last attempt the job fails;
 * - a cancelling job whose agent has not been told yet gets an AbortJob.
 * State lives in the job rows, so another hub, or this one after a restart, carries on.
 */
export class Dispatcher {
  private readonly inFlight = new Set<string>();
  /** Agents that refused a start for lack of a slot, until when they get no new one. */
  private readonly fullUntil = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  constructor(
    private readonly orm: Orm,
    private readonly registry: SessionRegistry,
    private readonly settings: DispatchSettings,
    private readonly log: Logger,
    /** Told of each job about to be sent: its chunks will soon pass through the hub's store threads. */
    private readonly onSend: (job: Job) => void = () => {},
  ) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), this.settings.dispatchIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** Runs a pass now, or right after the one in progress. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err: unknown) => this.log.warn({ err }, 'dispatch pass failed; retrying at the next tick'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  private async pass(): Promise<void> {
    const agents = this.registry.agentIds();
    if (agents.length === 0) return;
    const em = this.orm.em.fork();
    const rows = await em.execute<(Row & { max_jobs: string | null })[]>(
      `select j.*, a.capabilities->>'maxConcurrentJobs' as max_jobs from jobs j join agents a on a.id = j.agent_id
        where j.agent_id = any(?::uuid[]) and not a.disabled
          and j.status in ('queued', 'dispatched', 'running', 'cancelling')
        order by j.created_at, j.id`,
      [`{${agents.join(',')}}`],
    );
    const byAgent = new Map<string, { max: number; jobs: Job[] }>();
    for (const r of rows) {
      const job = jobFromRow(r);
      const entry = byAgent.get(job.agentId!) ?? { max: Math.max(1, Number(r.max_jobs) || 1), jobs: [] };
      entry.jobs.push(job);
      byAgent.set(job.agentId!, entry);
    }
    const now = Date.now();
    for (const [agentId, { max, jobs }] of byAgent) {
      const full = (this.fullUntil.get(agentId) ?? 0) > now;
      let free = full ? 0 : max - jobs.filter((j) => j.status !== 'queued').length;
      for (const job of jobs) {
        if (this.inFlight.has(job.id)) continue;
        if (job.status === 'dispatched' && !job.ackedAt && now - (job.dispatchedAt?.getTime() ?? 0) >= this.settings.ackTimeoutMs) {
          await this.send(job);
        } else if (job.status === 'queued' && free > 0) {
          const claimed = await new JobStore(em).transition(job.id, 'dispatched', { onlyFrom: ['queued'] });
          if (!claimed) continue;
          free--;
          await this.send(claimed);
        } else if (job.status === 'cancelling' && !job.abortSentAt) {
          await this.abort(job);
        }
      }
    }
  }

  /** Sends (or re-sends) a job's start command; counts the attempt first, so a crash cannot loop. */
  private async send(job: Job): Promise<void> {
    const em = this.orm.em.fork();
    const counted = await em.execute<{ dispatch_attempts: number }[]>(
      `update jobs set dispatch_attempts = dispatch_attempts + 1, dispatched_at = now()
        where id = ? and status = 'dispatched' and acked_at is null returning dispatch_attempts`,
      [job.id],
    );
    if (!counted[0]) return;
    const attempt = counted[0].dispatch_attempts;
    const log = this.log.child({ job_id: job.id, agent_id: job.agentId, execution_id: job.executionId, attempt });
    const jobs = new JobStore(em);
    if (attempt > this.settings.maxDispatchAttempts) {
      await jobs.transition(job.id, 'failed', {
        errorCode: 'DISPATCH_FAILED',
        errorMessage: `the agent did not acknowledge the start command after ${this.settings.maxDispatchAttempts} attempts`,
      });
      log.warn('dispatch failed: no acknowledgement');
      return;
    }
    await appendJobLog(em, job.id, 'info', attempt === 1 ? 'sent to the agent' : `sent to the agent again (attempt ${attempt})`);
    this.inFlight.add(job.id);
    this.onSend(job);
    this.registry
      .sendCommand(job.agentId!, startCommandOf(job), this.settings.ackTimeoutMs, job.commandId)
      .then(async (ack) => {
        const tx = this.orm.em.fork();
        if (ack.accepted) {
          await tx.execute('update jobs set acked_at = coalesce(acked_at, now()) where id = ?', [job.id]);
          await appendJobLog(tx, job.id, 'info', 'the agent accepted the job');
          return;
        }
        if (ack.errorCode === 'AT_CAPACITY') {
          // Not a failure: the agent's count of its slots ran ahead of ours. Back to the queue,
          // and no more starts on that agent for a while; the queue timeout bounds the waiting.
          this.fullUntil.set(job.agentId!, Date.now() + Math.max(500, this.settings.dispatchIntervalMs));
          await tx.execute('update jobs set dispatch_attempts = greatest(dispatch_attempts - 1, 0) where id = ?', [job.id]);
          await new JobStore(tx).transition(job.id, 'queued', { onlyFrom: ['dispatched'] });
          await appendJobLog(tx, job.id, 'info', `the agent had no free slot (${ack.message}); back in the queue`);
          return;
        }
        await new JobStore(tx).transition(job.id, 'failed', { errorCode: 'DISPATCH_FAILED', errorMessage: `the agent refused the job: ${ack.errorCode}: ${ack.message}` });
        log.warn({ code: ack.errorCode, reason: ack.message }, 'agent refused the job');
      })
      .catch((err: unknown) => log.info({ reason: (err as Error).message }, 'start command not acknowledged; it will be re-sent'))
      .finally(() => {
        this.inFlight.delete(job.id);
        this.kick();
      });
  }

  /** Tells the agent to abort a cancelling job. An agent that no longer holds it ends it here. */
  private async abort(job: Job): Promise<void> {
    const em = this.orm.em.fork();
    const claimed = await em.execute(`update jobs set abort_sent_at = now() where id = ? and status = 'cancelling' and abort_sent_at is null returning id`, [job.id]);
    if (claimed.length === 0) return;
    this.inFlight.add(job.id);
    this.registry
      .sendCommand(job.agentId!, { $case: 'abortJob', value: { jobId: job.id, reason: 'cancelled by an operator' } }, this.settings.ackTimeoutMs)
      .then(async (ack) => {
        const tx = this.orm.em.fork();
        await appendJobLog(tx, job.id, 'info', ack.errorCode === 'JOB_NOT_HELD' ? 'the agent no longer holds the job' : 'the agent is aborting the job');
        // Nothing of the job remains on the agent, so no final report will come.
        if (ack.errorCode === 'JOB_NOT_HELD') {
          await new JobStore(tx).transition(job.id, 'cancelled', { errorCode: 'CANCELLED', errorMessage: 'cancelled by an operator', onlyFrom: ['cancelling'] });
        }
      })
      .catch(async (err: unknown) => {
        this.log.info({ job_id: job.id, reason: (err as Error).message }, 'abort not acknowledged; it will be re-sent');
        await this.orm.em.fork().execute('update jobs set abort_sent_at = null where id = ?', [job.id]);
      })
      .finally(() => {
        this.inFlight.delete(job.id);
        this.kick();
      });
  }
}
