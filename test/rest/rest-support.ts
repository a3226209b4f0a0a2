import { randomUUID } from 'node:crypto';
import { createApiToken } from '../../hub/auth/api-tokens.js';
import type { ApiRole } from '../../hub/db/entities/api-token.js';
import type { Hub } from '../../hub/hub.js';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';

/**
 * A real hub on a fresh database, with one API token per role. `quiet` stretches the
 * lifecycle's timers so rows a test inserts stay exactly as inserted (no stall marks, no
 * dispatch attempts) while it reads them back.
 */
export interface RestHub {
  db: TestDatabase;
  hub: Hub;
  base: string;
  tokens: Record<ApiRole, string>;
  close(): Promise<void>;
}

const QUIET = {
  BACKHAUL_HUB_MONITOR_INTERVAL_MS: '3600000',
  BACKHAUL_HUB_DISPATCH_INTERVAL_MS: '3600000',
  BACKHAUL_HUB_FAILOVER_GRACE_MS: '3600000',
  BACKHAUL_HUB_SCHEDULER_INTERVAL_MS: '3600000',
};

export async function startRestHub(opts: { quiet?: boolean; env?: Record<string, string> } = {}): Promise<RestHub> {
  const db = await createTestDatabase('bh_rest');
  const hub = await startInProcessHub(db.url, { ...(opts.quiet ? QUIET : {}), ...opts.env });
  const tokens = {} as Record<ApiRole, string>;
  for (const role of ['viewer', 'operator', 'admin'] as const) tokens[role] = (await createApiToken(hub.orm.em.fork(), `test-${role}`, role)).token;
  return {
    db,
    hub,
    base: `http://127.0.0.1:${hub.httpPort}`,
    tokens,
    async close() {
      await hub.stop();
      await db.drop();
    },
  };
}

export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** One HTTP request; a JSON body is sent as such, a string as it is. */
export async function api<T = any>(
  h: Pick<RestHub, 'base'>,
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<ApiAnswer<T>> {
  const hdrs: Record<string, string> = { ...(token ? { authorization: `Bearer ${token}` } : {}) };
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    hdrs['content-type'] = 'application/json';
  }
  const res = await fetch(h.base + path, { method, headers: { ...hdrs, ...headers }, body: payload });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as T) : (null as T), headers: res.headers };
}

// ---- rows, inserted with SQL the way the hub writes them

export async function insertAgent(url: string, a: { name?: string; online?: boolean; disabled?: boolean; version?: string | null } = {}): Promise<string> {
  const id = randomUUID();
  await query(
    url,
    `insert into agents (id, name, hostname, version, capabilities, online, last_seen_at, cert_fingerprint, enrolled_at, disabled)
     values ($1, $2, $3, $4, $5, $6, now(), $7, now() - interval '1 day', $8)`,
    [id, a.name ?? `agent-${id.slice(0, 6)}`, 'hv1.example.net', a.version === undefined ? '0.1.0' : a.version, JSON.stringify({ drivers: ['qemu', 'file'], maxConcurrentJobs: 2 }), a.online ?? false, 'ab'.repeat(32), a.disabled ?? false],
  );
  return id;
}

export async function insertTarget(url: string, agentId: string, t: { ref?: string; name?: string; disks?: { name: string; path: string; sizeBytes: number }[] } = {}): Promise<{ id: string; ref: string }> {
  const id = randomUUID();
  const ref = t.ref ?? `vm-${id.slice(0, 8)}`;
  await query(
    url,
    `insert into targets (id, agent_id, ref, name, driver, disks, options, source, created_at, updated_at)
     values ($1, $2, $3, $4, 'qemu', $5, '{"qmp":"/run/qmp.sock"}', 'inventory', now(), now())`,
    [id, agentId, ref, t.name ?? ref, JSON.stringify(t.disks ?? [{ name: 'vda', path: '/var/lib/vm/vda.qcow2', sizeBytes: 1000 }])],
  );
  return { id, ref };
}

export async function insertFlow(url: string, f: { name?: string; targetIds?: string[]; stats?: { total: number; succeeded: number; partial: number; failed: number; cancelled: number } } = {}): Promise<string> {
  const id = randomUUID();
  const s = f.stats ?? { total: 0, succeeded: 0, partial: 0, failed: 0, cancelled: 0 };
  await query(
    url,
    `insert into flows (id, name, description, schedule, retention, enabled, created_at, updated_at,
       executions_total, executions_succeeded, executions_partial, executions_failed, executions_cancelled, bytes_total)
     values ($1, $2, 'nightly VMs', '{"cron":"0 2 * * *","timezone":"Europe/Paris"}', '{"keepLast":7,"keepDaily":14}', true, now(), now(), $3, $4, $5, $6, $7, 12345)`,
    [id, f.name ?? `flow-${id.slice(0, 8)}`, s.total, s.succeeded, s.partial, s.failed, s.cancelled],
  );
  for (const t of f.targetIds ?? []) await query(url, 'insert into flow_targets (flow_id, target_id) values ($1, $2)', [id, t]);
  return id;
}

export async function insertExecution(
  url: string,
  e: { flowId: string | null; flowName?: string; status?: string; total: number; succeeded?: number; failed?: number; cancelled?: number; createdAt?: Date },
): Promise<string> {
  const id = randomUUID();
  const status = e.status ?? 'running';
  await query(
    url,
    `insert into executions (id, flow_id, flow_name, trigger, status, jobs_total, jobs_succeeded, jobs_failed, jobs_cancelled, created_at, completed_at)
     values ($1, $2, $3, 'api', $4, $5, $6, $7, $8, $9, case when $4 = 'running' then null else now() end)`,
    [id, e.flowId, e.flowName ?? 'flow', status, e.total, e.succeeded ?? 0, e.failed ?? 0, e.cancelled ?? 0, e.createdAt ?? new Date()],
  );
  return id;
}

export interface JobRowInput {
  kind?: string;
  agentId: string | null;
  targetRef?: string | null;
  executionId?: string | null;
  status: string;
  phase?: string | null;
  /** Sizes of the target's disks in params.target.disks. */
  plannedDisks?: number[];
  progress?: {
    bytesTotal: number;
    bytesDone: number;
    bytesRead?: number;
    bytesZero?: number;
    bytesTransferred?: number;
    bytesReused?: number;
    rateBytesPerSecond?: number;
    etaSeconds?: number;
    busy?: { sourceRead: number; hashCompress: number; network: number; hubWrite: number };
  } | null;
  errorCode?: string | null;
  stalledAt?: Date | null;
  stallReason?: string | null;
  backupId?: string | null;
}

export async function insertJob(url: string, j: JobRowInput): Promise<string> {
  const id = randomUUID();
  const terminal = ['succeeded', 'failed', 'cancelled'].includes(j.status);
  const p = j.progress;
  const progress = p
    ? { bytesRead: p.bytesDone, bytesSent: 0, bytesZero: 0, bytesTransferred: 0, bytesReused: 0, rateBytesPerSecond: 0, etaSeconds: 0, busy: { sourceRead: 0, hashCompress: 0, network: 0, hubWrite: 0 }, ...p }
    : null;
  const params = { target: { id: j.targetRef ?? 'vm', name: 'vm', driver: 'qemu', disks: (j.plannedDisks ?? []).map((s, i) => ({ name: `d${i}`, path: `/p${i}`, sizeBytes: s })) } };
  await query(
    url,
    `insert into jobs (id, kind, agent_id, target_id, status, phase, params, command_id, progress, error_code, error_message, backup_id,
                       created_at, started_at, completed_at, execution_id, stalled_at, stall_reason)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, clock_timestamp(),
             case when $5 in ('running', 'cancelling', 'succeeded', 'failed') then now() end,
             case when $13 then now() end, $14, $15, $16)`,
    [
      id,
      j.kind ?? 'backup',
      j.agentId,
      j.targetRef ?? null,
      j.status,
      j.phase ?? null,
      JSON.stringify(params),
      randomUUID(),
      progress ? JSON.stringify(progress) : null,
      j.errorCode ?? (['failed', 'cancelled'].includes(j.status) ? 'AGENT_ERROR' : null),
      j.errorCode || ['failed', 'cancelled'].includes(j.status) ? 'it went wrong' : null,
      j.backupId ?? null,
      terminal,
      j.executionId ?? null,
      j.stalledAt ?? null,
      j.stallReason ?? null,
    ],
  );
  return id;
}

export async function insertBackup(url: string, b: { jobId: string; agentId: string; targetRef: string; createdAt?: Date }): Promise<string> {
  const id = randomUUID();
  const disks = [{ name: 'vda', sizeBytes: 8388608, indexPath: `indexes/${id}/vda.idx`, chunkCount: 2, zeroChunks: 1, bitmap: 'bh-1', fullReadReason: null }];
  await query(url, `insert into backups (id, job_id, agent_id, target_id, parent_backup_id, disks, bytes_total, created_at) values ($1, $2, $3, $4, null, $5, 8388608, $6)`, [
    id,
    b.jobId,
    b.agentId,
    b.targetRef,
    JSON.stringify(disks),
    b.createdAt ?? new Date(),
  ]);
  return id;
}

/** Every error answer has this shape. */
export function expectErrorShape(body: unknown): asserts body is { code: string; message: string; details?: Record<string, unknown> } {
  const b = body as { code?: unknown; message?: unknown; details?: unknown };
  if (typeof b?.code !== 'string' || typeof b.message !== 'string' || (b.details !== undefined && (typeof b.details !== 'object' || b.details === null))) {
    throw new Error(`not an error body: ${JSON.stringify(body)}`);
  }
}
