import type { JobErrorCode, JobStatusName } from '../jobs/job-state.js';

/** Every timeout of the monitor; all are settings of the hub. */
export interface SilenceSettings {
  /** A live job that reports nothing for this long is stalled. */
  stallTimeoutMs: number;
  /** A stalled job fails STALLED this long after it stalled. */
  stallGraceMs: number;
  /** A job whose agent is offline this long fails AGENT_LOST. */
  agentLostGraceMs: number;
  /** After a hub starts, nothing is called lost before this much time has passed. */
  failoverGraceMs: number;
  /** A job running longer than this fails TIMED_OUT. */
  jobTimeoutMs: number;
  /** A job queued longer than this fails TIMED_OUT. */
  queueTimeoutMs: number;
}

export interface WatchedJob {
  status: JobStatusName;
  /** Null for the hub's own jobs (verify, prune, gc). */
  agentId: string | null;
  agentOnline: boolean;
  agentLastSeenAt: number | null;
  createdAt: number;
  dispatchedAt: number | null;
  startedAt: number | null;
  lastEventAt: number | null;
  ackedAt: number | null;
  stalled: boolean;
}

export type Verdict =
  | { action: 'none' }
  | { action: 'stall'; reason: string }
  | { action: 'end'; to: 'failed' | 'cancelled'; code: JobErrorCode; message: string };

const s = (ms: number) => `${Math.round(ms / 1000)} s`;

/**
 * What the monitor does about one live job, as a pure function of the job, its agent and the
 * clock. The same rules hold whether the job never sent a first report or went quiet later.
 */
export function judge(j: WatchedJob, now: number, hubStartedAt: number, cfg: SilenceSettings): Verdict {
  const inFailover = now - hubStartedAt < cfg.failoverGraceMs;
  const end = (code: JobErrorCode, message: string): Verdict =>
    // A job being cancelled that can no longer be reached has been cancelled, not failed.
    j.status === 'cancelling' ? { action: 'end', to: 'cancelled', code: 'CANCELLED', message: `cancelled; ${message}` } : { action: 'end', to: 'failed', code, message };

  if (j.status === 'queued') {
    if (now - j.createdAt > cfg.queueTimeoutMs) return end('TIMED_OUT', `waited in the queue for more than ${s(cfg.queueTimeoutMs)}`);
  } else if (now - (j.startedAt ?? j.dispatchedAt ?? j.createdAt) > cfg.jobTimeoutMs) {
    return end('TIMED_OUT', `ran for more than ${s(cfg.jobTimeoutMs)}`);
  }

  if (j.agentId && !j.agentOnline) {
    // Offline time counts from the later of the last sight of the agent and this hub's start.
    const since = Math.max(j.agentLastSeenAt ?? j.createdAt, j.createdAt, hubStartedAt);
    if (!inFailover && now - since > cfg.agentLostGraceMs) return end('AGENT_LOST', `the agent has been offline for more than ${s(cfg.agentLostGraceMs)}`);
    return j.stalled ? { action: 'none' } : { action: 'stall', reason: 'the agent is disconnected' };
  }
  if (j.status === 'queued') return { action: 'none' };

  const quietSince = Math.max(j.lastEventAt ?? j.ackedAt ?? j.dispatchedAt ?? j.createdAt, hubStartedAt);
  const quiet = now - quietSince;
  if (quiet > cfg.stallTimeoutMs + cfg.stallGraceMs && !inFailover) return end('STALLED', `no report for ${s(quiet)}`);
  if (quiet > cfg.stallTimeoutMs && !j.stalled) return { action: 'stall', reason: j.lastEventAt ? `no report for ${s(quiet)}` : `no first report after ${s(quiet)}` };
  return { action: 'none' };
}
