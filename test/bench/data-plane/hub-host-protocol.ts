import type { JobProgressCounters } from '../../../hub/db/entities/job.js';
/** The IPC messages between the data-plane benchmark and its hub host (hub-host.ts). */

export interface RestoreDestinationMsg {
  diskName: string;
  path: string;
  format: 'raw' | 'qcow2';
  create: boolean;
}

export type HubHostRequest = { id: number } & (
  | { op: 'joinToken' }
  | { op: 'connected'; agentId: string }
  | { op: 'startBackup'; agentId: string; targetId: string }
  | { op: 'startRestore'; backupId: string; agentId: string; destinations: RestoreDestinationMsg[] }
  | { op: 'job'; jobId: string }
  | { op: 'stop' }
);

export type HubHostReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

export type HubHostEvent = { type: 'ready'; port: number; caSha256: string } | { type: 'failed'; error: string };

/** What the benchmark reads of a job (the jobs table, as JSON over IPC: dates are strings). */
export interface JobRow {
  id: string;
  status: string;
  phase: string | null;
  error_code: string | null;
  error_message: string | null;
  backup_id: string | null;
  progress: JobProgressCounters | null;
  result: { disks: { name: string; sizeBytes: number; sha256: string }[] } | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
}

export const TERMINAL_STATUSES = new Set(['succeeded', 'failed', 'cancelled']);
