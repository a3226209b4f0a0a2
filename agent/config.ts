import { z } from 'zod';
import { loadConfig, type ConfigOf, type Settings } from '../shared/config.js';

const targetSchema = z.object({
  id: z.string().min(1).describe('stable id of the target on this host'),
  name: z.string().min(1),
  driver: z.enum(['file', 'qemu']),
  disks: z.array(z.object({ name: z.string().min(1), path: z.string().min(1) })).min(1),
  /** Driver options, e.g. {"qmpSocket": "/run/qemu/vm1.qmp"} for qemu; they stay on this host. */
  options: z.record(z.string(), z.string()).optional(),
});

export type TargetConfig = z.infer<typeof targetSchema>;

/** Every agent setting. `backhaul-agent settings` prints this table. */
export const AGENT_SETTINGS = {
  stateDir: {
    env: 'BACKHAUL_AGENT_STATE_DIR',
    schema: z.string().default(process.env.STATE_DIRECTORY ?? '/var/lib/backhaul-agent'),
    doc: 'Holds the key, certificate, CA and identity written at enrollment (mode 0600).',
  },
  hub: { env: 'BACKHAUL_AGENT_HUB', schema: z.string().optional(), doc: 'Hub address host:port; defaults to the one used at enrollment.' },
  maxConcurrentJobs: { env: 'BACKHAUL_AGENT_MAX_JOBS', schema: z.coerce.number().int().min(1).max(64).default(2), doc: 'Jobs this agent runs at once (told to the hub).' },
  readLimitBytesPerSecond: {
    env: 'BACKHAUL_AGENT_READ_LIMIT_BPS',
    schema: z.coerce.number().int().min(0).default(0),
    doc: "Cap on a backup's disk reads in bytes per second, shared by its disks, to spare the guests' I/O; 0 means no cap.",
  },
  targets: { env: 'BACKHAUL_AGENT_TARGETS', schema: z.array(targetSchema).default([]), doc: 'Protectable targets: [{id, name, driver, disks: [{name, path}], options?}] (JSON).' },
  reconnectBaseMs: { env: 'BACKHAUL_AGENT_RECONNECT_BASE_MS', schema: z.coerce.number().int().positive().default(500), doc: 'First reconnect delay ceiling.' },
  reconnectCapMs: { env: 'BACKHAUL_AGENT_RECONNECT_CAP_MS', schema: z.coerce.number().int().positive().default(30_000), doc: 'Largest reconnect delay.' },
  logLevel: { env: 'LOG_LEVEL', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'), doc: 'pino log level.' },
} satisfies Settings;

export type AgentConfig = ConfigOf<typeof AGENT_SETTINGS>;

export function loadAgentConfig(file?: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return loadConfig(AGENT_SETTINGS, file ?? env.BACKHAUL_AGENT_CONFIG, env);
}
