import type { Hello, Target as ProtoTarget } from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import { isUuid } from '../../shared/uuid.js';
import type { SessionRegistry } from '../agents/registry.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import { removeBackup } from '../jobs/backup-removal.js';
import type { JobService, RestoreDestination } from '../jobs/job-service.js';
import type { MaintenanceJobs } from '../jobs/maintenance-jobs.js';
import type { HubMetrics } from '../metrics.js';
import type { Repository } from '../repository/index.js';
import { reconcileHeldJobs } from './agent-reconciliation.js';
import { Dispatcher, type DispatchSettings } from './dispatcher.js';
import type { ExecutionTrigger } from './execution-state.js';
import { Flows, type FlowInput } from './flows.js';
import { Monitor, type MonitorSettings } from './monitor.js';
import { Scheduler, type SchedulerSettings } from './scheduler.js';
import { addTarget, syncInventory, type NewTarget } from './targets.js';

export type LifecycleSettings = DispatchSettings & MonitorSettings & SchedulerSettings;

/** An id from outside: anything that is not a UUID names nothing. */
function mustBeId(id: string, what: string): void {
  if (!isUuid(id)) throw new HubError('NOT_FOUND', `${what} ${id} does not exist`);
}

/**
 * The application layer of the lifecycle: every write the REST facade and the admin service
 * offer goes through here, so neither holds logic the other lacks. It also runs the dispatcher
 * and the monitor, and reconciles each agent's jobs when it connects.
 */
export class Lifecycle {
  readonly dispatcher: Dispatcher;
  readonly monitor: Monitor;
  readonly scheduler: Scheduler;
  private readonly flows: Flows;

  constructor(
    private readonly orm: Orm,
    private readonly registry: SessionRegistry,
    readonly jobs: JobService,
    private readonly maintenance: MaintenanceJobs,
    private readonly repo: Repository,
    settings: LifecycleSettings,
    private readonly metrics: HubMetrics,
    private readonly log: Logger,
  ) {
    // The store threads exit when idle; started now, they are ready when the first chunk arrives
    // (in the bench's incremental, a cold start held the first chunk's store 190 ms instead of 60).
    this.dispatcher = new Dispatcher(orm, registry, settings, log, () => repo.chunks.warmWorkers());
    this.monitor = new Monitor(orm, settings, metrics, log, (agentId, jobId, reason) => this.abortOnAgent(agentId, jobId, reason));
    this.flows = new Flows(orm, jobs);
    this.scheduler = new Scheduler(orm, this.flows, maintenance, settings, log, () => this.dispatcher.kick());
  }

  start(): void {
    this.dispatcher.start();
    this.monitor.start();
    this.scheduler.start();
  }

  async stop(): Promise<void> {
    await Promise.all([this.dispatcher.stop(), this.monitor.stop(), this.scheduler.stop()]);
  }

  // Targets
  addTarget(t: NewTarget): Promise<string> {
    mustBeId(t.agentId, 'agent');
    return addTarget(this.orm.em.fork(), t);
  }

  // Flows
  createFlow(input: FlowInput): Promise<string> {
    return this.flows.create(input);
  }

  updateFlow(id: string, patch: Partial<FlowInput>): Promise<void> {
    mustBeId(id, 'flow');
    return this.flows.update(id, patch);
  }

  deleteFlow(id: string): Promise<void> {
    mustBeId(id, 'flow');
    return this.flows.remove(id);
  }

  setFlowEnabled(id: string, enabled: boolean): Promise<void> {
    mustBeId(id, 'flow');
    return this.flows.setEnabled(id, enabled);
  }

  /** Starts an execution of the flow and returns its id at once; the jobs run in the background. */
  async runFlow(id: string, trigger: ExecutionTrigger): Promise<string> {
    mustBeId(id, 'flow');
    const end = this.metrics.runNowLatency.startTimer();
    const executionId = await this.flows.run(id, trigger);
    end();
    return executionId;
  }

  // Executions and jobs
  /** Cancels every job of an execution that has not ended; the execution ends when they have. */
  async cancelExecution(id: string): Promise<void> {
    mustBeId(id, 'execution');
    const em = this.orm.em.fork();
    const rows = await em.execute<{ id: string }[]>(`update executions set cancel_requested_at = coalesce(cancel_requested_at, now()) where id = ? returning id`, [id]);
    if (rows.length === 0) throw new HubError('NOT_FOUND', `execution ${id} does not exist`);
    const live = await em.execute<{ id: string }[]>(`select id from jobs where execution_id = ? and status in ('queued', 'dispatched', 'running', 'cancelling') order by created_at`, [id]);
    for (const j of live) await this.jobs.cancel(j.id);
  }

  async cancelJob(id: string): Promise<void> {
    mustBeId(id, 'job');
    const job = await this.jobs.cancel(id);
    if (!job) throw new HubError('NOT_FOUND', `job ${id} does not exist`);
  }

  // Backups
  async restoreBackup(backupId: string, agentId: string | undefined, destinations: RestoreDestination[]): Promise<string> {
    mustBeId(backupId, 'backup');
    if (agentId !== undefined && !isUuid(agentId)) throw new HubError('INVALID_ARGUMENT', `agent ${agentId} is not enrolled`, { field: 'agent_id' });
    return (await this.jobs.startRestore(backupId, agentId, destinations)).id;
  }

  async verifyBackup(backupId: string): Promise<string> {
    mustBeId(backupId, 'backup');
    const rows = await this.orm.em.fork().execute('select 1 from backups where id = ?', [backupId]);
    if (rows.length === 0) throw new HubError('NOT_FOUND', `backup ${backupId} does not exist`);
    const { job, done } = await this.maintenance.startVerify(backupId);
    done.catch((err: unknown) => this.log.error({ err, job_id: job.id }, 'verify ended with an error'));
    return job.id;
  }

  async deleteBackup(backupId: string): Promise<void> {
    mustBeId(backupId, 'backup');
    const outcome = await removeBackup(this.orm.em.fork(), this.repo, backupId);
    if (outcome === 'not_found') throw new HubError('NOT_FOUND', `backup ${backupId} does not exist`);
    if (outcome === 'in_use') throw new HubError('IN_USE', `backup ${backupId} is being read by a running restore or verify`);
  }

  // Agents
  /**
   * A disabled agent gets no new jobs, and its stream is refused: this hub closes the one it
   * holds, and the presence check refuses the reconnect. Its running jobs then end as for any
   * lost agent. Enabling lets it connect again at its next retry.
   */
  async setAgentEnabled(id: string, enabled: boolean): Promise<void> {
    mustBeId(id, 'agent');
    const rows = await this.orm.em.fork().execute('update agents set disabled = ? where id = ? returning id', [!enabled, id]);
    if (rows.length === 0) throw new HubError('NOT_FOUND', `agent ${id} does not exist`);
    if (!enabled) this.registry.connected(id)?.close(new HubError('AGENT_DISABLED', `agent ${id} is disabled by an operator`));
    else this.dispatcher.kick();
  }

  /** After a Hello: record the inventory as targets, reconcile the agent's jobs, start what waits. */
  async agentConnected(agentId: string, hello: Hello): Promise<void> {
    const em = this.orm.em.fork();
    await syncInventory(em, agentId, hello.inventory);
    const toAbort = await reconcileHeldJobs(em, agentId, hello.heldJobs, this.log.child({ agent_id: agentId }));
    for (const jobId of toAbort) this.abortOnAgent(agentId, jobId, 'the hub no longer runs this job');
    this.dispatcher.kick();
  }

  async inventoryUpdated(agentId: string, inventory: ProtoTarget[]): Promise<void> {
    await syncInventory(this.orm.em.fork(), agentId, inventory);
  }

  /** A job ended (or its agent freed a slot): start what waits. */
  jobEnded(): void {
    this.dispatcher.kick();
  }

  /** Tells an agent whose stream this hub holds to abort a job and clean up; others learn at their next Hello. */
  abortOnAgent(agentId: string, jobId: string, reason: string): void {
    if (!this.registry.connected(agentId)) return;
    this.registry
      .sendCommand(agentId, { $case: 'abortJob', value: { jobId, reason } })
      .catch((err: unknown) => this.log.info({ job_id: jobId, agent_id: agentId, reason: (err as Error).message }, 'abort not acknowledged; the agent is told again at its next Hello'));
  }
}
