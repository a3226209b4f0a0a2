import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { FlowSchedule, RetentionPolicy } from '../db/entities/flow.js';
import { nextTick } from './schedule.js';
import type { InventoryDisk } from '../db/entities/agent.js';
import type { Orm } from '../db/orm.js';
import { HubError } from '../errors.js';
import type { JobService } from '../jobs/job-service.js';
import { JobStore } from '../jobs/job-store.js';
import { notifyExecution } from '../events/notify.js';
import { settleExecution } from './execution-settlement.js';
import type { ExecutionTrigger } from './execution-state.js';

export interface FlowInput {
  name: string;
  description?: string | null;
  targetIds: string[];
  schedule?: FlowSchedule | null;
  retention?: RetentionPolicy | null;
  enabled?: boolean;
}

const isUniqueViolation = (err: unknown, constraint: string) => (err as { code?: string; constraint?: string }).code === '23505' && (err as { constraint?: string }).constraint === constraint;

/** Protection flows: their definition, and "run now", which starts an execution with one job per target. */
export class Flows {
  constructor(
    private readonly orm: Orm,
    private readonly jobs: JobService,
  ) {}

  async create(input: FlowInput): Promise<string> {
    const id = randomUUID();
    await this.orm.em.fork().transactional(async (tx) => {
      try {
        const enabled = input.enabled ?? true;
        await tx.execute(
          `insert into flows (id, name, description, schedule, retention, enabled, next_run_at, created_at, updated_at)
           values (?, ?, ?, ?::jsonb, ?::jsonb, ?, ?, now(), now())`,
          [id, input.name, input.description ?? null, json(input.schedule), json(input.retention), enabled, nextRunAt(input.schedule ?? null, enabled)],
        );
      } catch (err) {
        if (isUniqueViolation(err, 'flows_name_key')) throw new HubError('ALREADY_EXISTS', `a flow named "${input.name}" exists`, { field: 'name' });
        throw err;
      }
      await setTargets(tx, id, input.targetIds);
    });
    return id;
  }

  async update(id: string, patch: Partial<FlowInput>): Promise<void> {
    await this.orm.em.fork().transactional(async (tx) => {
      const rows = await tx.execute<{ schedule: FlowSchedule | null; enabled: boolean }[]>('select schedule, enabled from flows where id = ? for update', [id]);
      if (!rows[0]) throw new HubError('NOT_FOUND', `flow ${id} does not exist`);
      const sets: string[] = [];
      const values: unknown[] = [];
      const set = (column: string, value: unknown, cast = '') => {
        sets.push(`${column} = ?${cast}`);
        values.push(value);
      };
      if (patch.name !== undefined) set('name', patch.name);
      if (patch.description !== undefined) set('description', patch.description);
      if (patch.schedule !== undefined) set('schedule', json(patch.schedule), '::jsonb');
      if (patch.retention !== undefined) set('retention', json(patch.retention), '::jsonb');
      if (patch.enabled !== undefined) set('enabled', patch.enabled);
      // A new schedule, or a flow switched on, counts from now; missed ticks of a disabled flow never fire.
      if (patch.schedule !== undefined || patch.enabled !== undefined) {
        set('next_run_at', nextRunAt(patch.schedule === undefined ? rows[0].schedule : patch.schedule, patch.enabled ?? rows[0].enabled));
      }
      try {
        await tx.execute(`update flows set ${[...sets, 'updated_at = now()'].join(', ')} where id = ?`, [...values, id]);
      } catch (err) {
        if (isUniqueViolation(err, 'flows_name_key')) throw new HubError('ALREADY_EXISTS', `a flow named "${patch.name}" exists`, { field: 'name' });
        throw err;
      }
      if (patch.targetIds !== undefined) {
        await tx.execute('delete from flow_targets where flow_id = ?', [id]);
        await setTargets(tx, id, patch.targetIds);
      }
    });
  }

  /** Deletes a flow that is not running. Its past executions stay, naming it by name. */
  async remove(id: string): Promise<void> {
    await this.orm.em.fork().transactional(async (tx) => {
      const rows = await tx.execute('select 1 from flows where id = ? for update', [id]);
      if (rows.length === 0) throw new HubError('NOT_FOUND', `flow ${id} does not exist`);
      const running = await tx.execute<{ id: string }[]>(`select id from executions where flow_id = ? and status = 'running'`, [id]);
      if (running[0]) throw new HubError('IN_USE', `flow ${id} is running (execution ${running[0].id}); cancel it first`, { execution_id: running[0].id });
      await tx.execute('delete from flows where id = ?', [id]);
    });
  }

  async setEnabled(id: string, enabled: boolean): Promise<void> {
    await this.update(id, { enabled });
  }

  /**
   * Starts an execution: one queued job per target, all in one transaction, so the answer's
   * counts are the jobs that exist. A target already being backed up gets a job that fails at
   * once with TARGET_BUSY, so the execution still accounts for every target.
   */
  async run(id: string, trigger: ExecutionTrigger): Promise<string> {
    const executionId = await this.orm.em.fork().transactional((tx) => this.runIn(tx, id, trigger));
    this.jobs.kickDispatcher();
    return executionId;
  }

  /**
   * The body of run, on the caller's transaction (the scheduler records the tick in the same
   * one). `tick` names the scheduled time this run is for, and whether it catches up missed ones.
   */
  async runIn(tx: EntityManager, id: string, trigger: ExecutionTrigger, tick?: { at: Date; catchUp: boolean }): Promise<string> {
    const executionId = randomUUID();
    const flows = await tx.execute<{ name: string; enabled: boolean }[]>('select name, enabled from flows where id = ? for update', [id]);
    const flow = flows[0];
    if (!flow) throw new HubError('NOT_FOUND', `flow ${id} does not exist`);
    if (!flow.enabled) throw new HubError('FLOW_DISABLED', `flow "${flow.name}" is disabled; enable it to run it`);
    const running = await tx.execute<{ id: string }[]>(`select id from executions where flow_id = ? and status = 'running'`, [id]);
    if (running[0]) throw new HubError('FLOW_ALREADY_RUNNING', `flow "${flow.name}" is already running as execution ${running[0].id}`, { execution_id: running[0].id });
    const targets = await tx.execute<{ agent_id: string; ref: string; name: string; driver: string; disks: InventoryDisk[]; options: Record<string, string> }[]>(
      `select t.agent_id, t.ref, t.name, t.driver, t.disks, t.options from flow_targets ft join targets t on t.id = ft.target_id
        where ft.flow_id = ? order by t.name, t.id`,
      [id],
    );
    if (targets.length === 0) throw new HubError('FLOW_HAS_NO_TARGETS', `flow "${flow.name}" has no targets; add some before running it`);
    await tx.execute(
      `insert into executions (id, flow_id, flow_name, trigger, status, jobs_total, scheduled_for, catch_up, created_at)
       values (?, ?, ?, ?, 'running', ?, ?, ?, now())`,
      [executionId, id, flow.name, trigger, targets.length, tick?.at ?? null, tick?.catchUp ?? false],
    );
    let busy = 0;
    for (const t of targets) {
      const target = { agentId: t.agent_id, ref: t.ref, name: t.name, driver: t.driver, disks: t.disks, options: t.options };
      try {
        await tx.transactional((sp) => this.jobs.createBackup(sp, target, executionId));
      } catch (err) {
        if ((err as { code?: string }).code !== 'TARGET_BUSY') throw err;
        busy++;
        await new JobStore(tx).create(
          {
            kind: 'backup',
            agentId: t.agent_id,
            targetId: t.ref,
            executionId,
            params: { target: { id: t.ref, name: t.name, driver: t.driver, disks: t.disks } },
            failWith: { code: 'TARGET_BUSY', message: (err as Error).message },
          },
          tx,
        );
      }
    }
    // With every job queued, the counters as inserted are right; jobs that failed at once
    // (their target busy) are counted by settling, which also ends and announces an execution
    // none of whose jobs could start.
    if (busy === 0 || !(await settleExecution(tx, executionId)).finalized) await notifyExecution(tx, executionId);
    return executionId;
  }
}

/** When an enabled flow with this schedule runs next, counted from now; null if it never does. */
export function nextRunAt(schedule: FlowSchedule | null, enabled: boolean): Date | null {
  return enabled && schedule ? nextTick(schedule, new Date()) : null;
}

function json(v: unknown): string | null {
  return v === undefined || v === null ? null : JSON.stringify(v);
}

async function setTargets(tx: EntityManager, flowId: string, targetIds: string[]): Promise<void> {
  const unique = [...new Set(targetIds)];
  if (unique.length === 0) return;
  const known = await tx.execute<{ id: string }[]>('select id from targets where id = any(?::uuid[])', [`{${unique.join(',')}}`]);
  const missing = unique.filter((t) => !known.some((k) => k.id === t));
  if (missing.length > 0) throw new HubError('INVALID_ARGUMENT', `unknown targets: ${missing.join(', ')}`, { field: 'target_ids', unknown: missing });
  await tx.execute('insert into flow_targets (flow_id, target_id) select ?, unnest(?::uuid[])', [flowId, `{${unique.join(',')}}`]);
}
