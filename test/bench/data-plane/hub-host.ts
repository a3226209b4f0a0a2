/**
 * The real hub (Hub.start) in a process of its own, driven over Node IPC by the data-plane
 * benchmark, so that the hub's CPU and peak RSS are its own and not the benchmark's. It is a
 * harness around the real hub code: the agent talks to it over real gRPC and mTLS, jobs go
 * through the real JobService and the real repository.
 *
 * Started with child_process.fork (see hub-host-client.ts). Configuration comes from the
 * environment as for `backhaul-hub serve` (DATABASE_URL, BACKHAUL_HUB_DATA_DIR,
 * BACKHAUL_HUB_REPOSITORY, LOG_LEVEL); the listen address is a free loopback port.
 *
 * Requests: { id, op, ...args }; replies: { id, ok: true, value } or { id, ok: false, error }.
 * The first message this process sends is { type: 'ready', port, caSha256 } (or { type: 'failed' }).
 */
import { createJoinToken } from '../../../hub/agents/join-tokens.js';
import { loadHubConfig } from '../../../hub/config.js';
import { Hub } from '../../../hub/hub.js';
import type { RestoreDestination } from '../../../hub/jobs/job-service.js';
import { createLogger } from '../../../shared/logger.js';
import type { HubHostRequest, JobRow } from './hub-host-protocol.js';
import { raiseServerWindows, windowBytesFromEnv } from './http2-window-patch.js';

const send = (msg: unknown) => process.send!(msg);

async function main(): Promise<void> {
  if (!process.send) throw new Error('hub-host must be started with child_process.fork (it needs an IPC channel)');
  const cfg = loadHubConfig(undefined, { ...process.env, BACKHAUL_HUB_LISTEN: '127.0.0.1:0', BACKHAUL_HUB_HTTP_LISTEN: '127.0.0.1:0', BACKHAUL_HUB_ID: `bench-hub-${process.pid}` });
  const log = createLogger('hub', cfg.logLevel);
  // An experiment (http2-window-patch.ts), off by default: Backhaul as shipped runs without it.
  const window = windowBytesFromEnv();
  if (window) raiseServerWindows(window);
  let hub: Hub;
  try {
    hub = await Hub.start(cfg, log);
  } catch (err) {
    send({ type: 'failed', error: (err as Error).stack ?? String(err) });
    process.exit(1);
  }
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    try {
      await hub.stop('bench over');
    } finally {
      process.exit(code);
    }
  };
  // The benchmark died or closed the channel: do not outlive it.
  process.on('disconnect', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));

  const handle = async (req: HubHostRequest): Promise<unknown> => {
    switch (req.op) {
      case 'joinToken':
        return (await createJoinToken(hub.orm.em.fork(), 10 * 60_000, 'data-plane bench')).token;
      case 'connected':
        return hub.registry.connected(req.agentId) !== undefined;
      case 'startBackup':
        return (await hub.jobs.startBackup(req.agentId, req.targetId)).id;
      case 'startRestore':
        return (await hub.jobs.startRestore(req.backupId, req.agentId, req.destinations as RestoreDestination[])).id;
      case 'job': {
        const rows = await hub.orm.em
          .fork()
          .getConnection()
          .execute<JobRow[]>(
            `select id, status, phase, error_code, error_message, backup_id, progress, result,
                    created_at, started_at, completed_at from jobs where id = ?`,
            [req.jobId],
          );
        return rows[0] ?? null;
      }
      case 'stop':
        setImmediate(() => void stop(0));
        return null;
    }
  };

  process.on('message', (req: HubHostRequest) => {
    handle(req).then(
      (value) => send({ id: req.id, ok: true, value }),
      (err: unknown) => send({ id: req.id, ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }),
    );
  });
  send({ type: 'ready', port: hub.port, caSha256: hub.ca.fingerprint });
}

main().catch((err: unknown) => {
  process.stderr.write(`hub-host failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
