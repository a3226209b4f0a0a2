import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { Backoff } from '../shared/backoff.js';
import type { AgentServiceClient, Command, CommandAck, ConnectRequest, ConnectResponse, EventAck, HeldJob, JobEvent, Target } from '../shared/gen/backhaul/v1/agent.js';
import type { Logger } from '../shared/logger.js';
import { VERSION } from '../shared/version.js';
import { hubClient } from './hub-client.js';
import type { AgentCredentials } from './state.js';

export interface ConnectionOptions {
  hub: string;
  maxConcurrentJobs: number;
  drivers: string[];
  reconnectBaseMs: number;
  reconnectCapMs: number;
  /** Rescans the targets; called for every Hello and on RefreshInventory. */
  inventory: () => Promise<Target[]>;
  /** Runs jobs; absent in tools that only hold a session (the simulated agents of the bench). */
  jobs?: JobRunnerPort;
}

/** What the connection needs of the job runner. */
export interface JobRunnerPort {
  held(): Promise<HeldJob[]>;
  replay(): Promise<void>;
  accept(cmd: Command): CommandAck;
  onEventAck(ack: EventAck): Promise<void>;
}

interface StreamOutcome {
  connected: boolean;
  code: number | null;
  details: string;
  drainAfterMs: number | null;
}

/** Remembers recent command ids so a repeated command is acknowledged again but not acted on twice. */
class SeenCommands {
  private readonly acks = new Map<string, CommandAck>();
  constructor(private readonly max = 1024) {}
  get(id: string): CommandAck | undefined {
    return this.acks.get(id);
  }
  add(ack: CommandAck): void {
    this.acks.set(ack.commandId, ack);
    if (this.acks.size > this.max) this.acks.delete(this.acks.keys().next().value!);
  }
}

/**
 * The agent's side of the control stream: dial, Hello, heartbeats, commands; after any end,
 * dial again with capped, jittered exponential backoff. Emits `connected` (epoch) and
 * `disconnected` (outcome).
 */
export class HubConnection extends EventEmitter {
  private readonly client: AgentServiceClient;
  private readonly backoff: Backoff;
  private readonly seen = new SeenCommands();
  private call: ClientDuplexStream<ConnectRequest, ConnectResponse> | null = null;
  private stopped = false;
  /** True between HelloAck and the stream's end: job events are written only then. */
  private connected = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private readonly log: Logger;

  constructor(
    private readonly creds: AgentCredentials,
    private readonly opts: ConnectionOptions,
    log: Logger,
  ) {
    super();
    this.log = log.child({ agent_id: creds.identity.agentId });
    this.client = hubClient(opts.hub, creds.caPem, creds.keyPem, creds.certPem);
    this.backoff = new Backoff(opts.reconnectBaseMs, opts.reconnectCapMs);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.call?.end();
    this.call?.cancel();
    this.wake?.();
    await this.loop;
    this.client.close();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const outcome = await this.session();
      this.emit('disconnected', outcome);
      if (this.stopped) break;
      if (outcome.connected) this.backoff.reset();
      const delay = (outcome.drainAfterMs ?? 0) + this.backoff.next();
      this.log.warn({ code: outcome.code, details: outcome.details, retry_in_ms: delay }, outcome.connected ? 'stream to hub ended; reconnecting' : 'cannot connect to hub; retrying');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** One stream, from dial to its end. */
  /** Sends a job event if a session is up; false otherwise (the runner keeps final reports on disk). */
  sendEvent(ev: JobEvent): boolean {
    if (!this.call || !this.connected) return false;
    this.call.write({ frame: { $case: 'jobEvent', value: ev } });
    return true;
  }

  private async session(): Promise<StreamOutcome> {
    const inventory = await this.opts.inventory();
    const heldJobs = (await this.opts.jobs?.held()) ?? [];
    return new Promise<StreamOutcome>((resolve) => {
      const outcome: StreamOutcome = { connected: false, code: null, details: '', drainAfterMs: null };
      let heartbeat: NodeJS.Timeout | null = null;
      let done = false;
      const finish = (code: number | null, details: string) => {
        if (done) return;
        done = true;
        if (heartbeat) clearInterval(heartbeat);
        this.connected = false;
        outcome.code = code;
        outcome.details = details;
        this.call = null;
        resolve(outcome);
      };
      const call = this.client.connect();
      this.call = call;
      call.on('data', (msg: ConnectResponse) => {
        const f = msg.frame;
        if (!f) return;
        switch (f.$case) {
          case 'helloAck':
            outcome.connected = true;
            heartbeat = setInterval(() => {
              call.write({ frame: { $case: 'heartbeat', value: { sentAt: new Date(), runningJobs: 0 } } });
            }, f.value.heartbeatIntervalMs);
            this.log.info({ hub_id: f.value.hubId, epoch: f.value.sessionEpoch, heartbeat_ms: f.value.heartbeatIntervalMs }, 'connected to hub');
            this.connected = true;
            this.emit('connected', f.value.sessionEpoch);
            this.opts.jobs?.replay().catch((err: unknown) => this.log.error({ err }, 'cannot replay final reports'));
            return;
          case 'command':
            this.onCommand(call, f.value).catch((err: unknown) => this.log.error({ err, command_id: f.value.commandId }, 'command failed'));
            return;
          case 'eventAck':
            this.log.debug({ seq: f.value.seq, disposition: f.value.disposition }, 'event acknowledged');
            this.opts.jobs?.onEventAck(f.value).catch((err: unknown) => this.log.error({ err, seq: f.value.seq }, 'cannot settle an acknowledged report'));
            return;
          case 'drain':
            outcome.drainAfterMs = f.value.reconnectAfterMs;
            this.log.info({ reason: f.value.reason, reconnect_after_ms: f.value.reconnectAfterMs }, 'hub asked to drain');
            call.end();
            return;
        }
      });
      call.on('error', (err: Error & { code?: number; details?: string }) => finish(err.code ?? null, err.details ?? err.message));
      call.on('status', (s: { code: number; details: string }) => finish(s.code, s.details));
      call.write({
        frame: {
          $case: 'hello',
          value: {
            agentId: this.creds.identity.agentId,
            version: VERSION,
            hostname: hostname(),
            capabilities: { drivers: this.opts.drivers, maxConcurrentJobs: this.opts.maxConcurrentJobs },
            inventory,
            heldJobs,
          },
        },
      });
    });
  }

  private async onCommand(call: ClientDuplexStream<ConnectRequest, ConnectResponse>, cmd: Command): Promise<void> {
    const repeat = this.seen.get(cmd.commandId);
    const ack = repeat ?? (await this.execute(call, cmd));
    if (!repeat) this.seen.add(ack);
    call.write({ frame: { $case: 'commandAck', value: ack } });
  }

  private async execute(call: ClientDuplexStream<ConnectRequest, ConnectResponse>, cmd: Command): Promise<CommandAck> {
    const kind = cmd.kind;
    switch (kind?.$case) {
      case 'refreshInventory': {
        const inventory = await this.opts.inventory();
        call.write({ frame: { $case: 'inventoryUpdate', value: { inventory } } });
        return { commandId: cmd.commandId, accepted: true, errorCode: '', message: `${inventory.length} targets` };
      }
      case 'abortJob':
      case 'startBackup':
      case 'startRestore':
        if (!this.opts.jobs) return { commandId: cmd.commandId, accepted: false, errorCode: 'NO_JOB_RUNNER', message: 'this agent runs no jobs' };
        return this.opts.jobs.accept(cmd);
      default:
        return { commandId: cmd.commandId, accepted: false, errorCode: 'UNSUPPORTED_COMMAND', message: 'this agent version does not know the command' };
    }
  }
}
