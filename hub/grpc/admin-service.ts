import type { Metadata, ServerUnaryCall, ServerWritableStream, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { WatchExecutionRequest, WatchExecutionResponse } from '../../shared/gen/backhaul/v1/admin.js';
import { isUuid } from '../../shared/uuid.js';
import type { ApiPrincipal } from '../auth/api-tokens.js';
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { HubError } from '../errors.js';
import { authorize } from '../rest/auth.js';
import { ADMIN_OPERATIONS, type AdminDeps, type AdminOperation } from './admin-operations.js';

/** How often a watch re-reads its execution. There is no event bus; a read per watcher per interval is cheap. */
export const WATCH_POLL_MS = 300;

const tokenOf = (md: Metadata): unknown => md.get('authorization')[0];

/**
 * The hub's end of a failed call: its own errors keep their code, an unreachable database is
 * UNAVAILABLE (retry), anything else is INTERNAL and logged as the bug it is.
 */
function hubErrorOf(err: unknown, deps: AdminDeps, rpc: string): HubError {
  if (err instanceof HubError) return err;
  if (isDatabaseUnavailable(err)) return new HubError('UNAVAILABLE', 'the database cannot be reached; retry later');
  deps.log.error({ err, rpc }, 'admin call failed inside the hub');
  return new HubError('INTERNAL', 'the call failed inside the hub; its log has the details');
}

/**
 * The AdminService: authenticates each call by the API token in its metadata, runs the
 * operation, and maps errors to gRPC statuses carrying the hub's stable codes. Watches are
 * tracked so a stopping hub can end them instead of waiting for them.
 */
export class AdminService {
  private readonly watches = new Set<(err: HubError) => void>();

  constructor(private readonly deps: AdminDeps) {}

  handlers(): UntypedServiceImplementation {
    const impl: UntypedServiceImplementation = {};
    for (const [name, op] of Object.entries(ADMIN_OPERATIONS)) {
      impl[name] = (call: ServerUnaryCall<unknown, object>, callback: sendUnaryData<object>) => void this.unary(name, op, call, callback);
    }
    impl.watchExecution = (call: ServerWritableStream<WatchExecutionRequest, WatchExecutionResponse>) => void this.watch(call);
    return impl;
  }

  /** Ends every open watch with HUB_DRAINING; the clients reconnect to another hub or later. */
  close(): void {
    for (const end of [...this.watches]) end(new HubError('HUB_DRAINING', 'the hub is shutting down; watch again on another hub or later'));
  }

  private async unary(rpc: string, op: AdminOperation, call: ServerUnaryCall<unknown, object>, callback: sendUnaryData<object>): Promise<void> {
    const t0 = performance.now();
    let principal: ApiPrincipal | null = null;
    try {
      principal = await authorize(this.deps.orm, tokenOf(call.metadata), op.access, 'this call');
      const res = await op.run(call.request, this.deps);
      this.audit(rpc, op.writes, t0, principal, 'OK');
      callback(null, res);
    } catch (err) {
      const e = hubErrorOf(err, this.deps, rpc);
      this.audit(rpc, op.writes, t0, principal, e.code);
      callback(e.toGrpc());
    }
  }

  /** Like REST: reads at debug (UIs and scripts poll), writes at info as an audit trail. */
  private audit(rpc: string, writes: boolean, t0: number, principal: ApiPrincipal | null, code: string): void {
    this.deps.log[writes ? 'info' : 'debug']({ rpc, code, ms: Math.round(performance.now() - t0), token: principal?.name ?? null }, 'admin call');
  }

  /** The execution now, then on every change of its view, until after the terminal state or until the client leaves. */
  private async watch(call: ServerWritableStream<WatchExecutionRequest, WatchExecutionResponse>): Promise<void> {
    let ended = false;
    let wake: () => void = () => {};
    const end = (err?: HubError) => {
      if (ended) return;
      ended = true;
      this.watches.delete(end);
      wake();
      if (err) call.emit('error', err.toGrpc());
      else call.end();
    };
    this.watches.add(end);
    call.on('cancelled', () => {
      ended = true;
      this.watches.delete(end);
      wake();
    });
    try {
      await authorize(this.deps.orm, tokenOf(call.metadata), 'viewer', 'this call');
      const id = call.request.id;
      if (!isUuid(id)) throw new HubError('NOT_FOUND', 'nothing has that id: it is not a UUID', { field: 'id' });
      let last = '';
      while (!ended) {
        const view = await this.deps.read.getExecution(id);
        if (!view) throw new HubError('NOT_FOUND', `no execution ${id}`);
        const shown = JSON.stringify(view);
        if (shown !== last && !ended) {
          last = shown;
          // A client that does not read is not sent more: wait for the buffer to drain.
          if (!call.write({ execution: view })) await new Promise<void>((resolve) => call.once('drain', resolve));
        }
        if (view.status !== 'running') return end();
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, WATCH_POLL_MS);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    } catch (err) {
      end(hubErrorOf(err, this.deps, 'WatchExecution'));
    }
  }
}
