import { hostname } from 'node:os';
import { z } from 'zod';
import { loadConfig, type ConfigOf, type Settings } from '../shared/config.js';

const ms = (def: number) => z.coerce.number().int().positive().default(def);
const names = z.union([z.array(z.string()), z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))]);

/** Every hub setting. `backhaul-hub settings` prints this table. */
export const HUB_SETTINGS = {
  listen: { env: 'BACKHAUL_HUB_LISTEN', schema: z.string().default('0.0.0.0:7443'), doc: 'gRPC listen address (agents, enrollment).' },
  httpListen: { env: 'BACKHAUL_HUB_HTTP_LISTEN', schema: z.string().default('0.0.0.0:8080'), doc: 'REST API listen address (host:port; port 0 picks a free one).' },
  apiBodyLimitBytes: { env: 'BACKHAUL_HUB_API_BODY_LIMIT_BYTES', schema: z.coerce.number().int().positive().default(1024 * 1024), doc: 'Largest REST request body accepted; larger ones get 413.' },
  dataDir: {
    env: 'BACKHAUL_HUB_DATA_DIR',
    schema: z.string().default(process.env.STATE_DIRECTORY ?? '/var/lib/backhaul-hub'),
    doc: 'State directory: the embedded PostgreSQL cluster lives here when databaseUrl is unset.',
  },
  databaseUrl: {
    env: 'DATABASE_URL',
    schema: z.string().url().optional(),
    doc: 'PostgreSQL URL. Unset: the hub runs an embedded PostgreSQL in dataDir.',
  },
  repositoryPath: {
    env: 'BACKHAUL_HUB_REPOSITORY',
    schema: z.string().optional(),
    doc: 'Chunk repository directory (shared storage when several hubs run); defaults to dataDir/repository.',
  },
  chunkWorkers: {
    env: 'BACKHAUL_HUB_CHUNK_WORKERS',
    schema: z.coerce.number().int().min(1).max(64).default(2),
    doc: "Worker threads that check and durably write uploaded chunks (decode, SHA-256, temp file, fsyncs, rename), off the main thread that serves gRPC. Idle ones exit after 10 s.",
  },
  hubId: { env: 'BACKHAUL_HUB_ID', schema: z.string().min(1).optional(), doc: 'Name of this hub among several; defaults to host:port.' },
  tlsNames: {
    env: 'BACKHAUL_HUB_TLS_NAMES',
    schema: names.default(['localhost', '127.0.0.1']),
    doc: 'Extra DNS names and IPs for the hub certificate (comma-separated in the environment).',
  },
  heartbeatIntervalMs: { env: 'BACKHAUL_HUB_HEARTBEAT_INTERVAL_MS', schema: ms(10_000), doc: 'How often agents send heartbeats (sent to them in HelloAck).' },
  heartbeatGraceMs: { env: 'BACKHAUL_HUB_HEARTBEAT_GRACE_MS', schema: ms(30_000), doc: 'Silence after which a stream is closed and its agent set offline.' },
  helloTimeoutMs: { env: 'BACKHAUL_HUB_HELLO_TIMEOUT_MS', schema: ms(10_000), doc: 'Time a new stream has to send Hello.' },
  presenceFlushMs: { env: 'BACKHAUL_HUB_PRESENCE_FLUSH_MS', schema: ms(30_000), doc: 'At most one last_seen_at write per agent per this interval.' },
  drainReconnectMs: { env: 'BACKHAUL_HUB_DRAIN_RECONNECT_MS', schema: ms(1_000), doc: 'Delay the drain notice asks agents to wait before reconnecting.' },
  shutdownTimeoutMs: { env: 'BACKHAUL_HUB_SHUTDOWN_TIMEOUT_MS', schema: ms(8_000), doc: 'Budget for a graceful stop on SIGTERM; streams are then cut.' },
  ackTimeoutMs: { env: 'BACKHAUL_HUB_ACK_TIMEOUT_MS', schema: ms(10_000), doc: 'Time an agent has to acknowledge a command before it is re-sent.' },
  maxDispatchAttempts: { env: 'BACKHAUL_HUB_MAX_DISPATCH_ATTEMPTS', schema: ms(3), doc: 'Sends of a start command before the job fails DISPATCH_FAILED.' },
  dispatchIntervalMs: { env: 'BACKHAUL_HUB_DISPATCH_INTERVAL_MS', schema: ms(1_000), doc: 'Period of the dispatch pass (it also runs on every change).' },
  monitorIntervalMs: { env: 'BACKHAUL_HUB_MONITOR_INTERVAL_MS', schema: ms(1_000), doc: 'Period of the monitor: silence detection and the reconciler.' },
  stallTimeoutMs: { env: 'BACKHAUL_HUB_STALL_TIMEOUT_MS', schema: ms(60_000), doc: 'A job that reports nothing for this long is shown stalled.' },
  stallGraceMs: { env: 'BACKHAUL_HUB_STALL_GRACE_MS', schema: ms(120_000), doc: 'A stalled job fails STALLED after this much more silence.' },
  agentLostGraceMs: { env: 'BACKHAUL_HUB_AGENT_LOST_GRACE_MS', schema: ms(120_000), doc: 'Jobs of an agent offline this long fail AGENT_LOST.' },
  failoverGraceMs: { env: 'BACKHAUL_HUB_FAILOVER_GRACE_MS', schema: ms(60_000), doc: 'After the hub starts, time agents have to reconnect before anything is called lost.' },
  jobTimeoutMs: { env: 'BACKHAUL_HUB_JOB_TIMEOUT_MS', schema: ms(86_400_000), doc: 'A job running longer than this fails TIMED_OUT.' },
  queueTimeoutMs: { env: 'BACKHAUL_HUB_QUEUE_TIMEOUT_MS', schema: ms(21_600_000), doc: 'A job queued longer than this (agent busy) fails TIMED_OUT.' },
  schedulerIntervalMs: { env: 'BACKHAUL_HUB_SCHEDULER_INTERVAL_MS', schema: ms(1_000), doc: 'Period of the scheduler: due flow ticks, retention, the GC schedule.' },
  catchUpAfterMs: { env: 'BACKHAUL_HUB_CATCH_UP_AFTER_MS', schema: ms(60_000), doc: 'A tick found later than this was missed (no hub ran): missed ticks give one catch-up run.' },
  gcSchedule: { env: 'BACKHAUL_HUB_GC_SCHEDULE', schema: z.string().default('0 3 * * *'), doc: 'Cron (UTC) of the scheduled garbage collection; empty for none.' },
  gcGraceMs: { env: 'BACKHAUL_HUB_GC_GRACE_MS', schema: ms(6 * 3_600_000), doc: 'GC never frees chunks younger than this: a backup in flight may name them.' },
  progressWriteIntervalMs: {
    env: 'BACKHAUL_HUB_PROGRESS_WRITE_INTERVAL_MS',
    schema: z.coerce.number().int().min(0).default(1_500),
    doc: "At most one database write of a running job's progress per this interval (phase changes and notes at once); 0 writes every report.",
  },
  grpcWindowBytes: {
    env: 'BACKHAUL_HUB_GRPC_WINDOW_BYTES',
    schema: z.coerce.number().int().min(65_535).max(2 ** 31 - 1).default(8 * 1024 * 1024),
    doc: "HTTP/2 receive window of the hub's gRPC port, per stream and per connection: how much an agent may upload before the hub's next window update.",
  },
  eventBufferSize: { env: 'BACKHAUL_HUB_EVENT_BUFFER', schema: ms(10_000), doc: 'Live events kept for event-stream clients that reconnect with Last-Event-ID.' },
  sseHeartbeatMs: { env: 'BACKHAUL_HUB_SSE_HEARTBEAT_MS', schema: ms(15_000), doc: 'Interval of heartbeat comments on idle event streams, so proxies keep them open.' },
  metricsToken: {
    env: 'BACKHAUL_HUB_METRICS_TOKEN',
    schema: z.string().min(16).optional(),
    doc: 'A bearer token for GET /metrics alone (for Prometheus); API tokens of any role work too.',
  },
  dbPoolMax: { env: 'BACKHAUL_HUB_DB_POOL_MAX', schema: ms(10), doc: 'Maximum PostgreSQL connections of this hub.' },
  logLevel: { env: 'LOG_LEVEL', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'), doc: 'pino log level.' },
} satisfies Settings;

export type HubConfig = ConfigOf<typeof HUB_SETTINGS>;

export function loadHubConfig(file?: string, env: NodeJS.ProcessEnv = process.env): HubConfig & { hubId: string } {
  const cfg = loadConfig(HUB_SETTINGS, file ?? env.BACKHAUL_HUB_CONFIG, env);
  return { ...cfg, hubId: cfg.hubId ?? `${hostname()}:${cfg.listen.split(':').pop()}` };
}
