import type { EntityManager } from '@mikro-orm/postgresql';
import type { JobKind, JobProgressCounters } from '../db/entities/job.js';
import type { Orm } from '../db/orm.js';
import { readJobLog, type JobLogLevel } from '../jobs/job-log.js';
import { STAGE_NAMES, TERMINAL, type JobPhaseName, type JobStatusName, type StageName } from '../jobs/job-state.js';
import type { ExecutionStatusName, ExecutionTrigger } from './execution-state.js';

/*
 * The read side of the hub: what the REST API (and later the admin gRPC service) shows. Views
 * are plain JSON, snake_case, timestamps as ISO strings. Everything here derives from rows as
 * they are, and follows DESIGN §1: progress comes from bytes, shows 100 only when terminal, and
 * a phase, rate or stall is shown only while the job is live.
 */

export type AgentStatus = 'online' | 'offline' | 'disabled';

export interface AgentView {
  id: string;
  name: string;
  hostname: string;
  version: string | null;
  status: AgentStatus;
  online: boolean;
  last_seen_at: string | null;
  enrolled_at: string;
  capabilities: { drivers: string[]; max_concurrent_jobs: number };
  /** Jobs dispatched to the agent and not yet ended (dispatched, running, cancelling). */
  running_jobs: number;
}

export interface DiskView {
  name: string;
  path: string;
  size_bytes: number;
}

export interface TargetView {
  id: string;
  agent_id: string;
  ref: string;
  name: string;
  driver: string;
  disks: DiskView[];
  options: Record<string, string>;
  source: 'inventory' | 'api';
  created_at: string;
  updated_at: string;
}

export interface RetentionView {
  keep_last: number | null;
  keep_daily: number | null;
  keep_weekly: number | null;
  keep_monthly: number | null;
}

export interface FlowView {
  id: string;
  name: string;
  description: string | null;
  target_ids: string[];
  schedule: { cron: string; timezone: string } | null;
  retention: RetentionView | null;
  enabled: boolean;
  /** When the schedule fires next; null without a schedule or while disabled. */
  next_run_at: string | null;
  created_at: string;
  updated_at: string;
  statistics: {
    last_execution_id: string | null;
    last_execution_status: ExecutionStatusName | null;
    last_execution_at: string | null;
    /** Ended executions; a running one is counted once it ends. */
    executions_total: number;
    succeeded: number;
    partial: number;
    failed: number;
    cancelled: number;
    /** succeeded / executions_total; null before the first execution ends. */
    success_rate: number | null;
    bytes_total: number;
  };
}

export interface JobView {
  id: string;
  kind: JobKind;
  execution_id: string | null;
  agent_id: string | null;
  /** The targets row, when the job's (agent, ref) names one. */
  target_id: string | null;
  target_ref: string | null;
  status: JobStatusName;
  phase: JobPhaseName | null;
  percent: number;
  bytes_total: number;
  bytes_done: number;
  bytes_transferred: number;
  bytes_reused: number;
  bytes_read: number;
  bytes_zero: number;
  rate_bytes_per_second: number | null;
  eta_seconds: number | null;
  /** A backup's stages, each the fraction of the agent's last report window it was working; null before any. */
  busy: StageBusyView | null;
  /** The busiest stage in `busy`: what holds the backup back. */
  bottleneck: StageName | null;
  stalled: boolean;
  stall_reason: string | null;
  error_code: string | null;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  backup_id: string | null;
  /** What an ended job produced: a restore's disks with their SHA-256, a verify's chunk counts and corrupt digests, a prune's removals. */
  result: Record<string, unknown> | null;
}

export type StageBusyView = Record<StageName, number>;

/** The stages' busy fractions as the agent reported them (held to 0..1); null when it reported none (all zero). */
function stageBusy(progress: JobProgressCounters | null): StageBusyView | null {
  const b = progress?.busy;
  if (!b) return null;
  const f = (v: unknown) => Math.min(1, Math.max(0, num(v)));
  const view: StageBusyView = { source_read: f(b.sourceRead), hash_compress: f(b.hashCompress), network: f(b.network), hub_write: f(b.hubWrite) };
  return STAGE_NAMES.some((s) => view[s] > 0) ? view : null;
}

export interface JobCounts {
  total: number;
  queued: number;
  /** dispatched + running + cancelling */
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

export interface ExecutionView {
  id: string;
  flow_id: string | null;
  flow_name: string;
  trigger: ExecutionTrigger;
  /** The schedule's tick this run is for (scheduled runs only). */
  scheduled_for: string | null;
  /** A scheduled run that stands for ticks missed while no hub ran. */
  catch_up: boolean;
  status: ExecutionStatusName;
  started_at: string;
  completed_at: string | null;
  job_counts: JobCounts;
  bytes_total: number;
  bytes_done: number;
  percent: number;
}

export interface ExecutionDetailView extends ExecutionView {
  jobs: JobView[];
  /** The prune jobs the flow's retention started after this execution ended. */
  retention_jobs: JobView[];
}

export interface BackupDiskView {
  name: string;
  size_bytes: number;
  chunk_count: number;
  zero_chunks: number;
  full_read_reason: string | null;
}

export interface BackupView {
  id: string;
  job_id: string;
  agent_id: string;
  target_id: string | null;
  target_ref: string;
  target_name: string | null;
  parent_backup_id: string | null;
  disks: BackupDiskView[];
  bytes_total: number;
  created_at: string;
}

export interface FlowTickView {
  tick_at: string;
  /** started: a run on time; catch_up: one run for ticks missed while no hub ran; skipped: no run (reason says why). */
  outcome: 'started' | 'catch_up' | 'skipped';
  missed_ticks: number;
  /** The run started, or for a skip because the flow was still running, that run. */
  execution_id: string | null;
  reason: string | null;
  recorded_at: string;
}

export interface JobLogLineView {
  at: string;
  level: JobLogLevel;
  message: string;
  fields: Record<string, unknown> | null;
}

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

type Row = Record<string, unknown>;

const LIVE_WITH_AGENT: readonly JobStatusName[] = ['dispatched', 'running', 'cancelling'];
/** Statuses in which the agent reports progress: the only ones where phase, rate and ETA mean anything. */
const REPORTING: readonly JobStatusName[] = ['running', 'cancelling'];

const iso = (v: unknown): string | null => (v == null ? null : new Date(v as string | Date).toISOString());
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && v !== '' && Number.isFinite(Number(v)) ? Number(v) : 0);
const optNum = (v: unknown): number | null => (v == null ? null : num(v));

/**
 * What a job is expected to move before it has reported: the sum of its target's disk sizes.
 * With it an execution's total is known from the start, and a job's percent never drops when
 * its first report arrives.
 */
export function plannedBytes(params: unknown): number {
  const disks = (params as { target?: { disks?: unknown } } | null)?.target?.disks;
  if (!Array.isArray(disks)) return 0;
  return disks.reduce((sum: number, d) => sum + num((d as { sizeBytes?: unknown } | null)?.sizeBytes), 0);
}

/** A job's total: its own report when it has one, else the plan. */
export function jobBytesTotal(progress: JobProgressCounters | null, params: unknown): number {
  const reported = num(progress?.bytesTotal);
  return reported > 0 ? reported : plannedBytes(params);
}

/** floor(100 · done / total); 99 at most until the job is terminal; 100 for a succeeded job. */
export function jobPercent(status: JobStatusName, bytesDone: number, bytesTotal: number): number {
  if (status === 'succeeded') return 100;
  if (bytesTotal <= 0) return 0;
  const p = Math.floor((100 * Math.min(bytesDone, bytesTotal)) / bytesTotal);
  return TERMINAL.has(status) ? p : Math.min(99, p);
}

/**
 * Byte-weighted across the jobs: an ended job counts as all of its bytes (it will move no
 * more), a live one as what it has done. 99 at most until the execution is terminal.
 */
export function executionPercent(status: ExecutionStatusName, jobs: readonly { status: JobStatusName; bytes_done: number; bytes_total: number }[]): number {
  if (status !== 'running') return 100;
  const total = jobs.reduce((s, j) => s + j.bytes_total, 0);
  if (total <= 0) return 0;
  const progressed = jobs.reduce((s, j) => s + (TERMINAL.has(j.status) ? j.bytes_total : Math.min(j.bytes_done, j.bytes_total)), 0);
  return Math.min(99, Math.floor((100 * progressed) / total));
}

export function jobView(r: Row): JobView {
  const status = r.status as JobStatusName;
  const progress = (r.progress as JobProgressCounters | null) ?? null;
  const live = !TERMINAL.has(status);
  const reporting = REPORTING.includes(status);
  const bytesTotal = jobBytesTotal(progress, r.params);
  const bytesDone = num(progress?.bytesDone);
  const stalled = live && r.stalled_at != null;
  const busy = stageBusy(progress);
  return {
    id: r.id as string,
    kind: r.kind as JobKind,
    execution_id: (r.execution_id as string | null) ?? null,
    agent_id: (r.agent_id as string | null) ?? null,
    target_id: (r.target_uuid as string | null) ?? null,
    target_ref: (r.target_id as string | null) ?? null,
    status,
    phase: reporting ? ((r.phase as JobPhaseName | null) ?? null) : null,
    percent: jobPercent(status, bytesDone, bytesTotal),
    bytes_total: bytesTotal,
    bytes_done: bytesDone,
    bytes_transferred: num(progress?.bytesTransferred),
    bytes_reused: num(progress?.bytesReused),
    bytes_read: num(progress?.bytesRead),
    bytes_zero: num(progress?.bytesZero),
    rate_bytes_per_second: reporting && progress ? num(progress.rateBytesPerSecond) : null,
    eta_seconds: reporting && progress ? optNum(progress.etaSeconds) : null,
    busy,
    bottleneck: busy ? STAGE_NAMES.reduce((a, s) => (busy[s] > busy[a] ? s : a)) : null,
    stalled,
    stall_reason: stalled ? ((r.stall_reason as string | null) ?? null) : null,
    error_code: (r.error_code as string | null) ?? null,
    error_message: (r.error_message as string | null) ?? null,
    created_at: iso(r.created_at)!,
    started_at: iso(r.started_at),
    completed_at: iso(r.completed_at),
    backup_id: (r.backup_id as string | null) ?? null,
    result: (r.result as Record<string, unknown> | null) ?? null,
  };
}

function executionView(r: Row, jobs: readonly { status: JobStatusName; bytes_done: number; bytes_total: number }[]): ExecutionView {
  const status = r.status as ExecutionStatusName;
  const count = (statuses: readonly JobStatusName[]) => jobs.filter((j) => statuses.includes(j.status)).length;
  return {
    id: r.id as string,
    flow_id: (r.flow_id as string | null) ?? null,
    flow_name: r.flow_name as string,
    trigger: r.trigger as ExecutionTrigger,
    scheduled_for: iso(r.scheduled_for),
    catch_up: Boolean(r.catch_up),
    status,
    started_at: iso(r.created_at)!,
    completed_at: iso(r.completed_at),
    // Ended counts are the row's: they are settled from the job rows in the transaction of
    // every terminal move. Queued and running are counted from the job rows as they are now.
    job_counts: {
      total: num(r.jobs_total),
      queued: count(['queued']),
      running: count(LIVE_WITH_AGENT),
      succeeded: num(r.jobs_succeeded),
      failed: num(r.jobs_failed),
      cancelled: num(r.jobs_cancelled),
    },
    bytes_total: jobs.reduce((s, j) => s + j.bytes_total, 0),
    bytes_done: jobs.reduce((s, j) => s + j.bytes_done, 0),
    percent: executionPercent(status, jobs),
  };
}

function agentView(r: Row): AgentView {
  const caps = (r.capabilities ?? {}) as { drivers?: unknown; maxConcurrentJobs?: unknown };
  return {
    id: r.id as string,
    name: r.name as string,
    hostname: r.hostname as string,
    version: (r.version as string | null) ?? null,
    status: r.disabled ? 'disabled' : r.online ? 'online' : 'offline',
    online: Boolean(r.online),
    last_seen_at: iso(r.last_seen_at),
    enrolled_at: iso(r.enrolled_at)!,
    capabilities: {
      drivers: Array.isArray(caps.drivers) ? caps.drivers.map(String) : [],
      max_concurrent_jobs: num(caps.maxConcurrentJobs),
    },
    running_jobs: num(r.running_jobs),
  };
}

function targetView(r: Row): TargetView {
  const disks = Array.isArray(r.disks) ? (r.disks as { name?: unknown; path?: unknown; sizeBytes?: unknown }[]) : [];
  return {
    id: r.id as string,
    agent_id: r.agent_id as string,
    ref: r.ref as string,
    name: r.name as string,
    driver: r.driver as string,
    disks: disks.map((d) => ({ name: String(d.name ?? ''), path: String(d.path ?? ''), size_bytes: num(d.sizeBytes) })),
    options: (r.options as Record<string, string> | null) ?? {},
    source: r.source as 'inventory' | 'api',
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
  };
}

function flowView(r: Row): FlowView {
  const schedule = r.schedule as { cron?: unknown; timezone?: unknown } | null;
  const retention = r.retention as { keepLast?: unknown; keepDaily?: unknown; keepWeekly?: unknown; keepMonthly?: unknown } | null;
  const total = num(r.executions_total);
  const succeeded = num(r.executions_succeeded);
  return {
    id: r.id as string,
    name: r.name as string,
    description: (r.description as string | null) ?? null,
    target_ids: (r.target_ids as string[] | null) ?? [],
    schedule: schedule ? { cron: String(schedule.cron ?? ''), timezone: String(schedule.timezone ?? 'UTC') } : null,
    retention: retention
      ? { keep_last: optNum(retention.keepLast), keep_daily: optNum(retention.keepDaily), keep_weekly: optNum(retention.keepWeekly), keep_monthly: optNum(retention.keepMonthly) }
      : null,
    enabled: Boolean(r.enabled),
    next_run_at: iso(r.next_run_at),
    created_at: iso(r.created_at)!,
    updated_at: iso(r.updated_at)!,
    statistics: {
      last_execution_id: (r.last_execution_id as string | null) ?? null,
      last_execution_status: (r.last_execution_status as ExecutionStatusName | null) ?? null,
      last_execution_at: iso(r.last_execution_at),
      executions_total: total,
      succeeded,
      partial: num(r.executions_partial),
      failed: num(r.executions_failed),
      cancelled: num(r.executions_cancelled),
      success_rate: total > 0 ? succeeded / total : null,
      bytes_total: num(r.bytes_total),
    },
  };
}

function backupView(r: Row): BackupView {
  const disks = Array.isArray(r.disks) ? (r.disks as Record<string, unknown>[]) : [];
  return {
    id: r.id as string,
    job_id: r.job_id as string,
    agent_id: r.agent_id as string,
    target_id: (r.target_uuid as string | null) ?? null,
    target_ref: r.target_id as string,
    target_name: (r.target_name as string | null) ?? null,
    parent_backup_id: (r.parent_backup_id as string | null) ?? null,
    disks: disks.map((d) => ({
      name: String(d.name ?? ''),
      size_bytes: num(d.sizeBytes),
      chunk_count: num(d.chunkCount),
      zero_chunks: num(d.zeroChunks),
      full_read_reason: (d.fullReadReason as string | null) ?? null,
    })),
    bytes_total: num(r.bytes_total),
    created_at: iso(r.created_at)!,
  };
}

const AGENT_SELECT = `select a.*, (select count(*) from jobs j where j.agent_id = a.id and j.status in ('dispatched', 'running', 'cancelling')) as running_jobs from agents a`;
const FLOW_SELECT = `select f.*, coalesce((select json_agg(ft.target_id order by ft.target_id) from flow_targets ft where ft.flow_id = f.id), '[]'::json) as target_ids from flows f`;
// Jobs and backups name their target by (agent_id, ref); the targets row gives its uuid.
const JOB_SELECT = 'select j.*, t.id as target_uuid from jobs j left join targets t on t.agent_id = j.agent_id and t.ref = j.target_id';
const BACKUP_FROM = 'from backups b left join targets t on t.agent_id = b.agent_id and t.ref = b.target_id';
const BACKUP_COLUMNS = 'select b.*, t.id as target_uuid, t.name as target_name';

/**
 * Every query the read APIs need. Ids must be UUIDs (the API checks them before calling);
 * a getter answers null when nothing has that id.
 */
export class ReadModel {
  constructor(private readonly orm: Orm) {}

  private em(): EntityManager {
    return this.orm.em.fork();
  }

  private async all<T>(sql: string, args: unknown[], view: (r: Row) => T): Promise<T[]> {
    return (await this.em().execute<Row[]>(sql, args)).map(view);
  }

  private async one<T>(sql: string, id: string, view: (r: Row) => T): Promise<T | null> {
    const [row] = await this.em().execute<Row[]>(sql, [id]);
    return row ? view(row) : null;
  }

  /** One page of `from … where …` in the given order, and how many rows match in all. */
  private async paged(em: EntityManager, columns: string, from: string, where: string, args: unknown[], order: string, p: { limit: number; offset: number }) {
    const rows = await em.execute<Row[]>(`${columns} ${from} where ${where} order by ${order} limit ? offset ?`, [...args, p.limit, p.offset]);
    const [counted] = await em.execute<{ n: string }[]>(`select count(*) as n ${from} where ${where}`, args);
    return { rows, total: num(counted?.n) };
  }

  listAgents(): Promise<AgentView[]> {
    return this.all(`${AGENT_SELECT} order by a.name, a.id`, [], agentView);
  }

  getAgent(id: string): Promise<AgentView | null> {
    return this.one(`${AGENT_SELECT} where a.id = ?`, id, agentView);
  }

  listTargets(filter: { agentId?: string } = {}): Promise<TargetView[]> {
    const agentId = filter.agentId ?? null;
    return this.all('select * from targets where (?::uuid is null or agent_id = ?::uuid) order by name, id', [agentId, agentId], targetView);
  }

  getTarget(id: string): Promise<TargetView | null> {
    return this.one('select * from targets where id = ?', id, targetView);
  }

  listFlows(): Promise<FlowView[]> {
    return this.all(`${FLOW_SELECT} order by f.name, f.id`, [], flowView);
  }

  getFlow(id: string): Promise<FlowView | null> {
    return this.one(`${FLOW_SELECT} where f.id = ?`, id, flowView);
  }

  /** Newest first. */
  async listExecutions(filter: { flowId?: string; status?: ExecutionStatusName; limit: number; offset: number }): Promise<Page<ExecutionView>> {
    const em = this.em();
    const where = '(?::uuid is null or flow_id = ?::uuid) and (?::text is null or status = ?::text)';
    const args = [filter.flowId ?? null, filter.flowId ?? null, filter.status ?? null, filter.status ?? null];
    const { rows, total } = await this.paged(em, 'select *', 'from executions', where, args, 'created_at desc, id desc', filter);
    const jobRows = rows.length
      ? await em.execute<Row[]>(
          // Only what the totals need: a job's params also hold its bitmaps and options.
          `select execution_id, status, progress, jsonb_build_object('target', jsonb_build_object('disks', params->'target'->'disks')) as params
             from jobs where execution_id = any(?::uuid[])`,
          [`{${rows.map((r) => r.id as string).join(',')}}`],
        )
      : [];
    const byExecution = new Map<string, { status: JobStatusName; bytes_done: number; bytes_total: number }[]>();
    for (const j of jobRows) {
      const progress = (j.progress as JobProgressCounters | null) ?? null;
      const list = byExecution.get(j.execution_id as string) ?? [];
      list.push({ status: j.status as JobStatusName, bytes_done: num(progress?.bytesDone), bytes_total: jobBytesTotal(progress, j.params) });
      byExecution.set(j.execution_id as string, list);
    }
    return {
      items: rows.map((r) => executionView(r, byExecution.get(r.id as string) ?? [])),
      total,
      limit: filter.limit,
      offset: filter.offset,
    };
  }

  /** An execution with its jobs, oldest job first. */
  async getExecution(id: string): Promise<ExecutionDetailView | null> {
    // One round trip: UIs poll this while a run goes on. The jobs come as JSON rows, which
    // jobView reads like driver rows (timestamps as strings, numbers as numbers).
    const rows = await this.em().execute<(Row & { jobs_json: Row[]; retention_json: Row[] })[]>(
      `select e.*,
         coalesce((select json_agg(x order by x.created_at, x.id) from (${JOB_SELECT} where j.execution_id = e.id) x), '[]') as jobs_json,
         coalesce((select json_agg(x order by x.created_at, x.id) from (${JOB_SELECT} where j.kind = 'prune' and j.params->>'afterExecutionId' = e.id::text) x), '[]') as retention_json
       from executions e where e.id = ?`,
      [id],
    );
    const e = rows[0];
    if (!e) return null;
    const jobs = e.jobs_json.map(jobView);
    return { ...executionView(e, jobs), jobs, retention_jobs: e.retention_json.map(jobView) };
  }

  /** The flow's schedule history, newest tick first: runs started, caught up and skipped; null when there is no such flow. */
  async getFlowHistory(id: string, limit: number): Promise<FlowTickView[] | null> {
    const em = this.em();
    if ((await em.execute('select 1 from flows where id = ?', [id])).length === 0) return null;
    const rows = await em.execute<Row[]>('select * from flow_ticks where flow_id = ? order by tick_at desc limit ?', [id, limit]);
    return rows.map((r) => ({
      tick_at: iso(r.tick_at)!,
      outcome: r.outcome as FlowTickView['outcome'],
      missed_ticks: num(r.missed_ticks),
      execution_id: (r.execution_id as string | null) ?? null,
      reason: (r.reason as string | null) ?? null,
      recorded_at: iso(r.recorded_at)!,
    }));
  }

  getJob(id: string): Promise<JobView | null> {
    return this.one(`${JOB_SELECT} where j.id = ?`, id, jobView);
  }

  /** The job's task log, oldest line first; null when there is no such job. */
  async getJobLog(id: string, limit: number): Promise<JobLogLineView[] | null> {
    const em = this.em();
    const exists = await em.execute('select 1 from jobs where id = ?', [id]);
    if (exists.length === 0) return null;
    const lines = await readJobLog(em, id, limit);
    return lines.map((l) => ({ at: iso(l.at)!, level: l.level, message: l.message, fields: l.fields }));
  }

  /** Newest first. `targetId` is the targets row's uuid. */
  async listBackups(filter: { targetId?: string; agentId?: string; limit: number; offset: number }): Promise<Page<BackupView>> {
    const where = '(?::uuid is null or t.id = ?::uuid) and (?::uuid is null or b.agent_id = ?::uuid)';
    const args = [filter.targetId ?? null, filter.targetId ?? null, filter.agentId ?? null, filter.agentId ?? null];
    const { rows, total } = await this.paged(this.em(), BACKUP_COLUMNS, BACKUP_FROM, where, args, 'b.created_at desc, b.id desc', filter);
    return { items: rows.map(backupView), total, limit: filter.limit, offset: filter.offset };
  }

  getBackup(id: string): Promise<BackupView | null> {
    return this.one(`${BACKUP_COLUMNS} ${BACKUP_FROM} where b.id = ?`, id, backupView);
  }
}
