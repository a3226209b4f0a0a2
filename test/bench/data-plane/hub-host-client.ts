import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HubHostEvent, HubHostReply, HubHostRequest, JobRow, RestoreDestinationMsg } from './hub-host-protocol.js';

type Op = HubHostRequest extends infer R ? (R extends { op: infer O } ? O : never) : never;
type ArgsOf<O extends Op> = Omit<Extract<HubHostRequest, { op: O }>, 'id' | 'op'>;

/**
 * The benchmark's side of hub-host.ts: forks it (its log to a file, so a slow reader never
 * pushes back on the hub), waits for "ready", and turns IPC replies into promises.
 */
export class HubHostClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly child: ChildProcess,
    readonly logPath: string,
    readonly port: number,
    readonly caSha256: string,
  ) {
    child.on('message', (m: HubHostReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(`hub host: ${m.error}`));
    });
    this.exited = new Promise((res) =>
      child.once('exit', (code, signal) => {
        for (const p of this.pending.values()) p.reject(new Error(`hub host exited (${code ?? signal}); log: ${this.logTail()}`));
        this.pending.clear();
        res({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(env: Record<string, string>, logPath: string, execArgv: string[] = []): Promise<HubHostClient> {
    const out = openSync(logPath, 'w');
    let child: ChildProcess;
    try {
      child = fork(fileURLToPath(new URL('./hub-host.js', import.meta.url)), [], {
        env: { ...process.env, ...env },
        stdio: ['ignore', out, out, 'ipc'],
        // The hub runs as it does in production (no inspector, default heap) unless told otherwise.
        execArgv,
      });
    } finally {
      closeSync(out);
    }
    const ready = await new Promise<HubHostEvent>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`hub host did not start within 60 s: ${readFileSync(logPath, 'utf8').slice(-2000)}`)), 60_000);
      child.once('message', (m: HubHostEvent) => (clearTimeout(t), resolve(m)));
      child.once('exit', (code, signal) => (clearTimeout(t), reject(new Error(`hub host exited (${code ?? signal}) before it was ready: ${readFileSync(logPath, 'utf8').slice(-2000)}`))));
    }).catch((err: unknown) => {
      child.kill('SIGKILL');
      throw err;
    });
    if (ready.type !== 'ready') {
      child.kill('SIGKILL');
      throw new Error(`hub did not start: ${ready.error}`);
    }
    return new HubHostClient(child, logPath, ready.port, ready.caSha256);
  }

  private request<O extends Op>(op: O, args: ArgsOf<O>): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, op, ...args } as HubHostRequest);
    });
  }

  async joinToken(): Promise<string> {
    return (await this.request('joinToken', {})) as string;
  }

  async connected(agentId: string): Promise<boolean> {
    return (await this.request('connected', { agentId })) as boolean;
  }

  async startBackup(agentId: string, targetId: string): Promise<string> {
    return (await this.request('startBackup', { agentId, targetId })) as string;
  }

  async startRestore(backupId: string, agentId: string, destinations: RestoreDestinationMsg[]): Promise<string> {
    return (await this.request('startRestore', { backupId, agentId, destinations })) as string;
  }

  async job(jobId: string): Promise<JobRow | null> {
    return (await this.request('job', { jobId })) as JobRow | null;
  }

  /** Graceful stop (Hub.stop), then SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const kill = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    if (this.child.connected) this.request('stop', {}).catch(() => {});
    else this.child.kill('SIGTERM');
    await this.exited;
    clearTimeout(kill);
  }

  logTail(chars = 2000): string {
    try {
      return readFileSync(this.logPath, 'utf8').slice(-chars);
    } catch {
      return '';
    }
  }

  /** Warnings and errors the hub logged, counted by message. */
  problems(): Map<string, number> {
    const out = new Map<string, number>();
    for (const line of readFileSync(this.logPath, 'utf8').split('\n')) {
      if (!line.startsWith('{')) continue;
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (typeof l.level !== 'number' || l.level < 40) continue;
      const err = (l.err as { message?: string } | undefined)?.message;
      const key = `${l.level >= 50 ? 'error' : 'warn'} "${String(l.msg)}"${err ? ` (${err})` : ''}`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
    return out;
  }
}
