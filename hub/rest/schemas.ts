import { z } from 'zod';
import { EXECUTION_STATUSES, EXECUTION_TRIGGERS } from '../lifecycle/execution-state.js';
import { JOB_PHASES, JOB_STATUSES, STAGE_NAMES, type StageName } from '../jobs/job-state.js';
import { scheduleProblem } from '../lifecycle/schedule.js';
import type {
  AgentView,
  BackupView,
  ExecutionDetailView,
  ExecutionView,
  FlowTickView,
  FlowView,
  JobLogLineView,
  JobView,
  Page,
  TargetView,
} from '../lifecycle/read-model.js';

/*
 * The REST API's request and response schemas. Requests are validated with them, and the
 * OpenAPI document is generated from them, so the two cannot drift. Every schema a route names
 * as a body is registered here under the name the OpenAPI document gives it.
 */

export const apiSchemas = z.registry<{ id: string; description?: string }>();

function named<T extends z.ZodType>(id: string, schema: T, description?: string): T {
  apiSchemas.add(schema, description ? { id, description } : { id });
  return schema;
}

const uuid = () => z.guid();
const timestamp = () => z.iso.datetime();
const bytes = () => z.number().min(0);
const pageQuery = { limit: z.coerce.number().int().min(1).max(500).default(50), offset: z.coerce.number().int().min(0).max(1_000_000).default(0) };

// ---- requests

// Queries are strict: a misspelt filter is a 400 naming it, not a silently unfiltered list.

export const IdParams = z.object({ id: uuid() });

export const ListTargetsQuery = z.strictObject({ agent_id: uuid().optional() });

export const ListExecutionsQuery = z.strictObject({ flow_id: uuid().optional(), status: z.enum(EXECUTION_STATUSES).optional(), ...pageQuery });

export const ListBackupsQuery = z.strictObject({ target_id: uuid().describe('the targets row id').optional(), agent_id: uuid().optional(), ...pageQuery });

export const JobLogQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(10_000).default(1000) });

const name = () => z.string().trim().min(1).max(200);

const isTimeZone = (tz: string): boolean => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch (err) {
    if (err instanceof RangeError) return false;
    throw err;
  }
};

const ScheduleInput = z
  .strictObject({
    cron: z.string().trim().min(1).max(200).describe('cron expression: five fields, such as "0 2 * * *", or six with seconds first'),
    timezone: z.string().max(100).refine(isTimeZone, 'must be an IANA time zone, such as "Europe/Paris"').default('UTC'),
  })
  .superRefine((v, ctx) => {
    const problem = scheduleProblem(v);
    if (problem?.field === 'cron') ctx.addIssue({ code: 'custom', path: ['cron'], message: problem.message });
  });

const keep = () => z.number().int().min(0).max(100_000).optional();
const RetentionInput = z.strictObject({ keep_last: keep(), keep_daily: keep(), keep_weekly: keep(), keep_monthly: keep() });

export const CreateTargetRequest = named(
  'CreateTargetRequest',
  z.strictObject({
    agent_id: uuid(),
    ref: z.string().min(1).max(500).describe("the agent's own id for the target"),
    name: name(),
    driver: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'must be a driver name, such as "qemu" or "file"'),
    disks: z
      .array(z.strictObject({ name: z.string().min(1).max(200), path: z.string().min(1).max(4096), size_bytes: z.number().int().min(0) }))
      .min(1)
      .max(64),
    options: z.record(z.string().max(200), z.string().max(4096)).default({}),
  }),
);

const flowFields = {
  name: name(),
  description: z.string().max(2000).nullable(),
  target_ids: z.array(uuid()).max(10_000),
  schedule: ScheduleInput.nullable(),
  retention: RetentionInput.nullable(),
  enabled: z.boolean(),
};

export const CreateFlowRequest = named(
  'CreateFlowRequest',
  z.strictObject({
    name: flowFields.name,
    description: flowFields.description.default(null),
    target_ids: flowFields.target_ids.default([]),
    schedule: flowFields.schedule.default(null),
    retention: flowFields.retention.default(null),
    enabled: flowFields.enabled.default(true),
  }),
);

export const UpdateFlowRequest = named(
  'UpdateFlowRequest',
  z
    .strictObject({
      name: flowFields.name.optional(),
      description: flowFields.description.optional(),
      target_ids: flowFields.target_ids.optional(),
      schedule: flowFields.schedule.optional(),
      retention: flowFields.retention.optional(),
      enabled: flowFields.enabled.optional(),
    })
    .refine((p) => Object.keys(p).length > 0, 'name at least one field to change'),
);

export const RestoreRequest = named(
  'RestoreRequest',
  z.strictObject({
    agent_id: uuid().optional().describe('agent that writes the images; defaults to the one that took the backup'),
    disks: z
      .array(
        z.strictObject({
          disk_name: z.string().min(1).max(200),
          path: z.string().min(1).max(4096),
          format: z.enum(['raw', 'qcow2']).default('raw'),
          create: z.boolean().default(false),
        }),
      )
      .min(1)
      .max(64),
  }),
);

// ---- responses

export const ErrorBody = named(
  'Error',
  z.object({
    code: z.string().describe('stable error code, such as NOT_FOUND or FLOW_ALREADY_RUNNING'),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional().describe('structured facts, such as the invalid field or the running execution'),
  }),
);

export const Health = named('Health', z.object({ status: z.enum(['ok', 'ready']) }));

export const Agent = named(
  'Agent',
  z.object({
    id: uuid(),
    name: z.string(),
    hostname: z.string(),
    version: z.string().nullable(),
    status: z.enum(['online', 'offline', 'disabled']),
    online: z.boolean(),
    last_seen_at: timestamp().nullable(),
    enrolled_at: timestamp(),
    capabilities: z.object({ drivers: z.array(z.string()), max_concurrent_jobs: z.number().int() }),
    running_jobs: z.number().int().min(0),
  }) satisfies z.ZodType<AgentView>,
);

export const Target = named(
  'Target',
  z.object({
    id: uuid(),
    agent_id: uuid(),
    ref: z.string(),
    name: z.string(),
    driver: z.string(),
    disks: z.array(z.object({ name: z.string(), path: z.string(), size_bytes: bytes() })),
    options: z.record(z.string(), z.string()),
    source: z.enum(['inventory', 'api']),
    created_at: timestamp(),
    updated_at: timestamp(),
  }) satisfies z.ZodType<TargetView>,
);

const keepOut = () => z.number().int().nullable();

export const Flow = named(
  'Flow',
  z.object({
    id: uuid(),
    name: z.string(),
    description: z.string().nullable(),
    target_ids: z.array(uuid()),
    schedule: z.object({ cron: z.string(), timezone: z.string() }).nullable(),
    retention: z.object({ keep_last: keepOut(), keep_daily: keepOut(), keep_weekly: keepOut(), keep_monthly: keepOut() }).nullable(),
    enabled: z.boolean(),
    next_run_at: timestamp().nullable().describe('when the schedule fires next; null without a schedule or while disabled'),
    created_at: timestamp(),
    updated_at: timestamp(),
    statistics: z.object({
      last_execution_id: uuid().nullable(),
      last_execution_status: z.enum(EXECUTION_STATUSES).nullable(),
      last_execution_at: timestamp().nullable(),
      executions_total: z.number().int().min(0),
      succeeded: z.number().int().min(0),
      partial: z.number().int().min(0),
      failed: z.number().int().min(0),
      cancelled: z.number().int().min(0),
      success_rate: z.number().min(0).max(1).nullable(),
      bytes_total: bytes(),
    }),
  }) satisfies z.ZodType<FlowView>,
);

const percent = () => z.number().int().min(0).max(100);

export const Job = named(
  'Job',
  z.object({
    id: uuid(),
    kind: z.enum(['backup', 'restore', 'verify', 'prune', 'gc']),
    execution_id: uuid().nullable(),
    agent_id: uuid().nullable(),
    target_id: uuid().nullable(),
    target_ref: z.string().nullable(),
    status: z.enum(JOB_STATUSES),
    phase: z.enum(JOB_PHASES).nullable().describe('set only while the job is running or cancelling'),
    percent: percent().describe('from bytes; 100 only once succeeded, at most 99 while live'),
    bytes_total: bytes(),
    bytes_done: bytes(),
    bytes_transferred: bytes(),
    bytes_reused: bytes(),
    bytes_read: bytes(),
    bytes_zero: bytes().describe('all-zero chunks: skipped by block status or found zero, never sent'),
    rate_bytes_per_second: z.number().min(0).nullable(),
    eta_seconds: z.number().min(0).nullable(),
    busy: z
      .object(Object.fromEntries(STAGE_NAMES.map((s) => [s, z.number().min(0).max(1)])) as Record<StageName, z.ZodNumber>)
      .nullable()
      .describe("a backup's stages (source read, hashing and compression, network, the hub's stores), each the fraction of the agent's last report window it was working"),
    bottleneck: z.enum(STAGE_NAMES).nullable().describe('the busiest stage: what holds the backup back'),
    stalled: z.boolean(),
    stall_reason: z.string().nullable(),
    error_code: z.string().nullable(),
    error_message: z.string().nullable(),
    created_at: timestamp(),
    started_at: timestamp().nullable(),
    completed_at: timestamp().nullable(),
    backup_id: uuid().nullable(),
    result: z.record(z.string(), z.unknown()).nullable().describe("what an ended job produced: a restore's disks with their SHA-256, a verify's chunk counts and corrupt digests, a prune's removals"),
  }) satisfies z.ZodType<JobView>,
);

const executionFields = {
  id: uuid(),
  flow_id: uuid().nullable(),
  flow_name: z.string(),
  trigger: z.enum(EXECUTION_TRIGGERS),
  scheduled_for: timestamp().nullable().describe("the schedule's tick this run is for"),
  catch_up: z.boolean().describe('a scheduled run standing for ticks missed while no hub ran'),
  status: z.enum(EXECUTION_STATUSES),
  started_at: timestamp(),
  completed_at: timestamp().nullable(),
  job_counts: z.object({
    total: z.number().int().min(0),
    queued: z.number().int().min(0),
    running: z.number().int().min(0).describe('dispatched, running or cancelling'),
    succeeded: z.number().int().min(0),
    failed: z.number().int().min(0),
    cancelled: z.number().int().min(0),
  }),
  bytes_total: bytes(),
  bytes_done: bytes(),
  percent: percent().describe('byte-weighted over the jobs; 100 only once the execution has ended'),
};

export const Execution = named('Execution', z.object(executionFields) satisfies z.ZodType<ExecutionView>);
export const ExecutionDetail = named(
  'ExecutionDetail',
  z.object({ ...executionFields, jobs: z.array(Job), retention_jobs: z.array(Job).describe("prune jobs the flow's retention started after it ended") }) satisfies z.ZodType<ExecutionDetailView>,
);

export const FlowHistory = named(
  'FlowHistory',
  z.object({
    items: z.array(
      z.object({
        tick_at: timestamp(),
        outcome: z.enum(['started', 'catch_up', 'skipped']),
        missed_ticks: z.number().int().min(0),
        execution_id: uuid().nullable(),
        reason: z.string().nullable(),
        recorded_at: timestamp(),
      }) satisfies z.ZodType<FlowTickView>,
    ),
  }),
);

export const FlowHistoryQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

export const JobLogLine = named(
  'JobLogLine',
  z.object({ at: timestamp(), level: z.enum(['debug', 'info', 'warn', 'error']), message: z.string(), fields: z.record(z.string(), z.unknown()).nullable() }) satisfies z.ZodType<JobLogLineView>,
);

export const Backup = named(
  'Backup',
  z.object({
    id: uuid(),
    job_id: uuid(),
    agent_id: uuid(),
    target_id: uuid().nullable(),
    target_ref: z.string(),
    target_name: z.string().nullable(),
    parent_backup_id: uuid().nullable(),
    disks: z.array(z.object({ name: z.string(), size_bytes: bytes(), chunk_count: z.number().int().min(0), zero_chunks: z.number().int().min(0), full_read_reason: z.string().nullable() })),
    bytes_total: bytes(),
    created_at: timestamp(),
  }) satisfies z.ZodType<BackupView>,
);

const list = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item) });
const page = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), total: z.number().int().min(0), limit: z.number().int(), offset: z.number().int() });

export const AgentList = named('AgentList', list(Agent));
export const TargetList = named('TargetList', list(Target));
export const FlowList = named('FlowList', list(Flow));
export const ExecutionPage = named('ExecutionPage', page(Execution) satisfies z.ZodType<Page<ExecutionView>>);
export const BackupPage = named('BackupPage', page(Backup) satisfies z.ZodType<Page<BackupView>>);
export const JobLog = named('JobLog', list(JobLogLine));
