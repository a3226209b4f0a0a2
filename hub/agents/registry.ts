import type { CommandAck } from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import { HubError } from '../errors.js';
import type { Presence } from './presence.js';
import type { AgentSession, CommandKind, SessionHost } from './session.js';

export interface RegistryOptions {
  hubId: string;
  heartbeatIntervalMs: number;
  /** A session that sends nothing for this long is closed and its agent set offline. */
  heartbeatGraceMs: number;
  /** A stream that sends no Hello within this time is closed. */
  helloTimeoutMs: number;
}

/** The agent streams this hub holds, one per agent, newest epoch wins. */
export class SessionRegistry implements SessionHost {
  private readonly byAgent = new Map<string, AgentSession>();
  private readonly opening = new Set<AgentSession>();
  private timer: NodeJS.Timeout | null = null;
  presence!: Presence;
  jobEvents: SessionHost['jobEvents'] = null;
  lifecycle: SessionHost['lifecycle'] = null;

  constructor(
    private readonly opts: RegistryOptions,
    readonly log: Logger,
  ) {}

  get hubId(): string {
    return this.opts.hubId;
  }

  get heartbeatIntervalMs(): number {
    return this.opts.heartbeatIntervalMs;
  }

  get size(): number {
    return this.byAgent.size;
  }

  /** The agents whose streams this hub holds. */
  agentIds(): string[] {
    return [...this.byAgent.keys()];
  }

  connected(agentId: string): AgentSession | undefined {
    return this.byAgent.get(agentId);
  }

  /** Tracks a stream from the moment it opens, so a stream that never says Hello is timed out. */
  opened(session: AgentSession): void {
    this.opening.add(session);
  }

  attach(session: AgentSession): boolean {
    this.opening.delete(session);
    const current = this.byAgent.get(session.agentId!);
    if (current && current.epoch > session.epoch) return false;
    this.byAgent.set(session.agentId!, session);
    if (current && current !== session) {
      current.close(new HubError('SESSION_REPLACED', `replaced by a newer session (epoch ${session.epoch})`));
    }
    return true;
  }

  detach(session: AgentSession): void {
    this.opening.delete(session);
    if (session.agentId && this.byAgent.get(session.agentId) === session) this.byAgent.delete(session.agentId);
  }

  /** A newer epoch exists in the database: the agent reconnected through another hub. */
  fenced(agentId: string, epoch: number): void {
    const s = this.byAgent.get(agentId);
    if (s && s.epoch === epoch) s.close(new HubError('SESSION_REPLACED', 'the agent connected again through another session'));
  }

  sendCommand(agentId: string, kind: CommandKind, timeoutMs = 10_000, commandId?: string): Promise<CommandAck> {
    const s = this.byAgent.get(agentId);
    if (!s) return Promise.reject(new Error(`agent ${agentId} has no stream on this hub`));
    return s.sendCommand(kind, timeoutMs, commandId);
  }

  /** Closes streams that went silent past the grace, or never said Hello. */
  checkLiveness(now = Date.now()): void {
    for (const s of this.opening) {
      if (s.state === 'awaiting_hello' && now - s.openedAt > this.opts.helloTimeoutMs) {
        s.close(new HubError('HELLO_TIMEOUT', `no Hello within ${this.opts.helloTimeoutMs} ms`));
      }
      if (s.state === 'closed') this.opening.delete(s);
    }
    for (const s of this.byAgent.values()) {
      if (now - s.lastFrameAt > this.opts.heartbeatGraceMs) {
        s.close(new HubError('HEARTBEAT_MISSED', `nothing received for ${now - s.lastFrameAt} ms`));
      }
    }
  }

  start(): void {
    this.timer = setInterval(() => this.checkLiveness(), Math.min(1000, this.opts.heartbeatIntervalMs));
    this.timer.unref();
  }

  /** Sends every agent a drain notice and ends its stream. */
  drainAll(reason: string, reconnectAfterMs: number): number {
    if (this.timer) clearInterval(this.timer);
    const sessions = [...this.byAgent.values(), ...this.opening];
    for (const s of sessions) s.drain(reason, reconnectAfterMs);
    return sessions.length;
  }
}
