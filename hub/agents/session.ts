import { randomUUID } from 'node:crypto';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { certificateSha256 } from '../../shared/certs.js';
import {
  EventDisposition,
  JobStatus,
  type Command,
  type CommandAck,
  type EventAck,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  type JobEvent,
} from '../../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../../shared/logger.js';
import { HubError } from '../errors.js';
import { MalformedFrame } from '../grpc/frames.js';
import type { Presence } from './presence.js';
import { canTransition, type SessionState } from './session-state.js';

export type CommandKind = NonNullable<Command['kind']>;

export interface SessionHost {
  presence: Presence;
  /** Applies job events; absent only in hubs built without the job machinery. */
  jobEvents: { handle(agentId: string, ev: JobEvent): Promise<EventAck> } | null;
  /** Reconciles an agent's jobs and targets when it connects; absent in hubs without the lifecycle. */
  lifecycle: { agentConnected(agentId: string, hello: Hello): Promise<void>; inventoryUpdated(agentId: string, inventory: Hello['inventory']): Promise<void> } | null;
  hubId: string;
  heartbeatIntervalMs: number;
  log: Logger;
  /** Registers an accepted session; returns false if a newer session already holds the agent. */
  attach(session: AgentSession): boolean;
  detach(session: AgentSession): void;
}

interface PendingCommand {
  resolve: (ack: CommandAck) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** One agent's Connect stream on this hub: Hello, heartbeats, commands and events. */
export class AgentSession {
  readonly id = randomUUID();
  readonly openedAt = Date.now();
  state: SessionState = 'awaiting_hello';
  agentId: string | null = null;
  epoch = 0;
  lastFrameAt = Date.now();
  private readonly certFingerprint: string | null;
  private readonly certCommonName: string | null;
  private readonly pending = new Map<string, PendingCommand>();
  private log: Logger;
  /** Serialises frame handling: a frame's database work finishes before the next frame's starts. */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly call: ServerDuplexStream<ConnectRequest | MalformedFrame, ConnectResponse>,
    private readonly host: SessionHost,
  ) {
    this.log = host.log.child({ session_id: this.id, peer: call.getPeer() });
    const cert = call.getAuthContext()?.sslPeerCertificate;
    this.certFingerprint = cert?.raw ? certificateSha256(cert.raw) : null;
    this.certCommonName = typeof cert?.subject?.CN === 'string' ? cert.subject.CN : null;
    call.on('data', (frame: ConnectRequest | MalformedFrame) => {
      this.lastFrameAt = Date.now();
      this.queue = this.queue.then(() => this.onFrame(frame)).catch((err: unknown) => this.fail(err));
    });
    call.on('end', () => this.close());
    call.on('cancelled', () => this.close());
    call.on('error', (err) => {
      this.log.debug({ err }, 'stream error');
      this.close();
    });
    if (!this.certFingerprint) this.close(new HubError('CLIENT_CERT_REQUIRED', 'Connect requires a client certificate issued by this hub; enroll the agent first'));
  }

  private transition(to: SessionState): boolean {
    if (!canTransition(this.state, to)) return false;
    this.state = to;
    return true;
  }

  private async onFrame(frame: ConnectRequest | MalformedFrame): Promise<void> {
    if (this.state === 'closed') return;
    if (frame instanceof MalformedFrame) throw new HubError('MALFORMED_FRAME', `the frame cannot be decoded: ${frame.reason}`);
    const f = frame.frame;
    if (!f) throw new HubError('MALFORMED_FRAME', 'the frame carries no message');
    if (this.state === 'awaiting_hello') {
      if (f.$case !== 'hello') throw new HubError('PROTOCOL_VIOLATION', `the first frame must be Hello, got ${f.$case}`);
      return this.onHello(f.value);
    }
    this.host.presence.touch(this.agentId!, this.epoch);
    switch (f.$case) {
      case 'hello':
        throw new HubError('PROTOCOL_VIOLATION', 'Hello was already received on this stream');
      case 'heartbeat':
        return;
      case 'commandAck':
        return this.onCommandAck(f.value);
      case 'jobEvent':
        return this.onJobEvent(f.value);
      case 'inventoryUpdate':
        await this.host.presence.updateInventory(this.agentId!, this.epoch, f.value.inventory);
        await this.host.lifecycle?.inventoryUpdated(this.agentId!, f.value.inventory);
        this.log.info({ targets: f.value.inventory.length }, 'inventory updated');
        return;
    }
  }

  private async onHello(hello: Hello): Promise<void> {
    if (!hello.agentId) throw new HubError('MALFORMED_FRAME', 'Hello.agent_id is required');
    if (hello.agentId !== this.certCommonName) {
      throw new HubError('AGENT_ID_MISMATCH', `Hello names agent ${hello.agentId} but the certificate belongs to ${this.certCommonName}`);
    }
    const epoch = await this.host.presence.goOnline(hello.agentId, this.certFingerprint!, hello);
    if (this.state !== 'awaiting_hello') {
      // The stream died while the database answered; undo our online mark.
      await this.host.presence.goOffline(hello.agentId, epoch);
      return;
    }
    this.agentId = hello.agentId;
    this.epoch = epoch;
    this.log = this.log.child({ agent_id: this.agentId, epoch });
    if (!this.host.attach(this)) {
      throw new HubError('SESSION_REPLACED', 'a newer session of this agent is already connected');
    }
    this.transition('active');
    this.send({ frame: { $case: 'helloAck', value: { hubId: this.host.hubId, sessionEpoch: epoch, heartbeatIntervalMs: this.host.heartbeatIntervalMs } } });
    this.log.info({ version: hello.version, held_jobs: hello.heldJobs.length, targets: hello.inventory.length }, 'agent connected');
    // Runs in the frame queue: the agent's replayed reports are handled after the reconciliation.
    await this.host.lifecycle?.agentConnected(hello.agentId, hello);
  }

  private onCommandAck(ack: CommandAck): void {
    const p = this.pending.get(ack.commandId);
    if (!p) {
      this.log.debug({ command_id: ack.commandId }, 'ack for a command that is not pending (duplicate or late)');
      return;
    }
    clearTimeout(p.timer);
    this.pending.delete(ack.commandId);
    p.resolve(ack);
  }

  private async onJobEvent(ev: JobEvent): Promise<void> {
    const ack: EventAck = this.host.jobEvents
      ? await this.host.jobEvents.handle(this.agentId!, ev)
      : { seq: ev.seq, disposition: EventDisposition.EVENT_DISPOSITION_REFUSED, message: `job ${ev.jobId} is not known to this hub`, jobStatus: JobStatus.JOB_STATUS_UNSPECIFIED };
    if (ack.disposition === EventDisposition.EVENT_DISPOSITION_REFUSED) this.log.warn({ job_id: ev.jobId, seq: ev.seq, reason: ack.message }, 'job event refused');
    this.send({ frame: { $case: 'eventAck', value: ack } });
  }

  /** Sends a command and resolves with the agent's acknowledgement. The same id may be re-sent safely. */
  sendCommand(kind: CommandKind, timeoutMs: number, commandId: string = randomUUID()): Promise<CommandAck> {
    if (this.state !== 'active') return Promise.reject(new Error(`session of agent ${this.agentId} is ${this.state}`));
    return new Promise<CommandAck>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(commandId);
        reject(new Error(`agent ${this.agentId} did not acknowledge command ${commandId} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(commandId, { resolve, reject, timer });
      this.send({ frame: { $case: 'command', value: { commandId, kind } } });
    });
  }

  send(frame: ConnectResponse): void {
    if (this.state === 'closed' || this.call.writableEnded) return;
    this.call.write(frame);
  }

  /** Tells the agent to go away and come back later, then ends the stream cleanly. */
  drain(reason: string, reconnectAfterMs: number): void {
    this.send({ frame: { $case: 'drain', value: { reason, reconnectAfterMs } } });
    this.close();
  }

  private fail(err: unknown): void {
    if (err instanceof HubError) {
      this.close(err);
      return;
    }
    this.log.error({ err }, 'unexpected error on agent stream');
    this.close(new HubError('INTERNAL', 'the hub failed to handle a frame'));
  }

  /** Ends the stream (with an error status if given) and records the agent offline. Idempotent. */
  close(err?: HubError): void {
    const wasActive = this.state === 'active';
    if (!this.transition('closed')) return;
    if (err) this.log.warn({ code: err.code, reason: err.message }, 'closing agent stream');
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(`session closed before command ${id} was acknowledged`));
    }
    this.pending.clear();
    if (!this.call.writableEnded && !this.call.cancelled) {
      if (err) {
        this.call.emit('error', err.toGrpc());
      } else {
        this.call.end();
      }
    }
    if (wasActive) {
      this.host.detach(this);
      this.host.presence
        .goOffline(this.agentId!, this.epoch)
        .then(() => this.log.info({ reason: err?.code ?? 'stream ended' }, 'agent disconnected'))
        .catch((e: unknown) => this.log.error({ err: e }, 'could not record agent offline; the stale sweep will'));
    }
  }
}
