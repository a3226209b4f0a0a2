import type { Orm } from '../db/orm.js';
import type { Logger } from '../../shared/logger.js';
import { HubError } from '../errors.js';
import type { Hello } from '../../shared/gen/backhaul/v1/agent.js';

export interface PresenceOptions {
  hubId: string;
  /** At most one last_seen_at write per agent per this interval. */
  flushIntervalMs: number;
  /** An online row whose last_seen_at is older than this (and no hub refreshes it) is set offline. */
  staleAfterMs: number;
}

/**
 * Writes agent presence to PostgreSQL. State changes (online, offline) are written at once;
 * last_seen_at is coalesced to one batched write per agent per flush interval. Every write
 * is fenced by the session epoch, so an old session can never overwrite a newer one.
 */
export class Presence {
  private readonly seen = new Map<string, { epoch: number; at: Date }>();
  private readonly writtenAt = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private lastSweep = 0;
  /** Counts database writes, for the benchmark's write budget. */
  writes = 0;

  constructor(
    private readonly orm: Orm,
    private readonly opts: PresenceOptions,
    private readonly log: Logger,
    /** Told about sessions a newer epoch has fenced (the agent reconnected elsewhere). */
    private readonly onFenced: (agentId: string, epoch: number) => void,
  ) {}

  private get conn() {
    return this.orm.em.getConnection();
  }

  /**
   * Marks every agent this hub holds offline: at start for sessions of a previous run (their
   * streams died with it), and as the last step of a graceful stop.
   */
  async markHeldAgentsOffline(): Promise<number> {
    const rows = await this.conn.execute<{ id: string }[]>(
      'update agents set online = false, connected_hub = null where online and connected_hub = ? returning id',
      [this.opts.hubId],
    );
    this.writes += 1;
    if (rows.length > 0) this.log.info({ agents: rows.length }, 'marked agents of the previous hub run offline');
    return rows.length;
  }

  /**
   * Accepts a Hello: bumps the session epoch and marks the agent online, only if the agent
   * exists, is enabled and presents the certificate on record.
   */
  async goOnline(agentId: string, certFingerprint: string, hello: Hello): Promise<number> {
    const rows = await this.conn.execute<{ session_epoch: number }[]>(
      `update agents set session_epoch = session_epoch + 1, online = true, last_seen_at = now(), connected_hub = ?,
         version = ?, hostname = ?, capabilities = ?::jsonb, inventory = ?::jsonb
       where id = ? and not disabled and cert_fingerprint = ? returning session_epoch`,
      [
        this.opts.hubId,
        hello.version,
        hello.hostname,
        JSON.stringify({ drivers: hello.capabilities?.drivers ?? [], maxConcurrentJobs: hello.capabilities?.maxConcurrentJobs ?? 0 }),
        JSON.stringify(hello.inventory),
        agentId,
        certFingerprint,
      ],
    );
    this.writes += 1;
    if (rows.length === 1) {
      const epoch = Number(rows[0]!.session_epoch);
      this.writtenAt.set(agentId, Date.now());
      return epoch;
    }
    const found = await this.conn.execute<{ disabled: boolean; cert_fingerprint: string }[]>(
      'select disabled, cert_fingerprint from agents where id = ?',
      [agentId],
    );
    if (found.length === 0) throw new HubError('CLIENT_CERT_UNKNOWN', `agent ${agentId} is not enrolled on this hub`);
    if (found[0]!.disabled) throw new HubError('AGENT_DISABLED', `agent ${agentId} is disabled by an operator`);
    throw new HubError('CLIENT_CERT_UNKNOWN', `the certificate is not the one on record for agent ${agentId}; re-enroll the agent`);
  }

  /** Records that a frame arrived. Written later, at most once per flush interval. */
  touch(agentId: string, epoch: number): void {
    this.seen.set(agentId, { epoch, at: new Date() });
  }

  private readonly inflight = new Set<Promise<unknown>>();

  /** Waits for offline writes still under way, so shutdown records every disconnect. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.inflight]);
  }

  goOffline(agentId: string, epoch: number): Promise<void> {
    const p = this.writeOffline(agentId, epoch).finally(() => this.inflight.delete(p));
    this.inflight.add(p);
    return p;
  }

  private async writeOffline(agentId: string, epoch: number): Promise<void> {
    this.seen.delete(agentId);
    this.writtenAt.delete(agentId);
    await this.conn.execute(
      'update agents set online = false, connected_hub = null, last_seen_at = now() where id = ? and session_epoch = ?',
      [agentId, epoch],
    );
    this.writes += 1;
  }

  async updateInventory(agentId: string, epoch: number, inventory: unknown): Promise<void> {
    await this.conn.execute('update agents set inventory = ?::jsonb where id = ? and session_epoch = ?', [JSON.stringify(inventory), agentId, epoch]);
    this.writes += 1;
  }

  start(tickMs = 1000): void {
    this.timer = setInterval(() => {
      this.tick().catch((err: unknown) => this.log.error({ err }, 'presence flush failed; retrying next tick'));
    }, tickMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Flushes due last_seen_at values in one statement, then, now and then, sweeps stale rows. */
  async tick(now = Date.now()): Promise<void> {
    const due: { id: string; seen: string; epoch: number }[] = [];
    for (const [id, s] of this.seen) {
      if (now - (this.writtenAt.get(id) ?? 0) >= this.opts.flushIntervalMs) due.push({ id, seen: s.at.toISOString(), epoch: s.epoch });
    }
    if (due.length > 0) {
      for (const d of due) {
        this.seen.delete(d.id);
        this.writtenAt.set(d.id, now);
      }
      const updated = await this.conn.execute<{ id: string }[]>(
        `update agents a set last_seen_at = v.seen from jsonb_to_recordset(?::jsonb) as v(id uuid, seen timestamptz, epoch int)
         where a.id = v.id and a.session_epoch = v.epoch and a.online returning a.id`,
        [JSON.stringify(due)],
      );
      this.writes += 1;
      const kept = new Set(updated.map((r) => r.id));
      for (const d of due) if (!kept.has(d.id)) this.onFenced(d.id, d.epoch);
    }
    if (!this.sweeping && now - this.lastSweep >= this.opts.flushIntervalMs) {
      this.sweeping = true;
      this.lastSweep = now;
      try {
        await this.sweepStale();
      } finally {
        this.sweeping = false;
      }
    }
  }

  /** Agents whose hub died without saying so: nobody refreshed them within staleAfterMs. */
  async sweepStale(): Promise<string[]> {
    const rows = await this.conn.execute<{ id: string }[]>(
      `update agents set online = false, connected_hub = null
       where online and last_seen_at < now() - make_interval(secs => ?) returning id`,
      [this.opts.staleAfterMs / 1000],
    );
    this.writes += 1;
    for (const r of rows) this.log.warn({ agent_id: r.id }, 'agent marked offline: no hub has refreshed it');
    return rows.map((r) => r.id);
  }
}
