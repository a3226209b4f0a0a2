import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Server } from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { serverKeepalive, HUB_TLS_NAME } from '../shared/grpc-options.js';
import type { Logger } from '../shared/logger.js';
import { Presence } from './agents/presence.js';
import { SessionRegistry } from './agents/registry.js';
import type { HubConfig } from './config.js';
import { openDatabase, type DatabaseHandle } from './db/database.js';
import { migrate, openOrm, type Orm } from './db/orm.js';
import { AdminServiceService } from '../shared/gen/backhaul/v1/admin.js';
import { AdminService } from './grpc/admin-service.js';
import { agentServiceDefinition, agentServiceHandlers } from './grpc/agent-service.js';
import { hubServerCredentials } from './grpc/credentials.js';
import { dataServiceDefinition, dataServiceHandlers, DATA_MAX_MESSAGE_BYTES } from './grpc/data-service.js';
import { addDiscoveryServices, ADMIN_SERVICE_NAME } from './grpc/discovery.js';
import type { HealthImplementation } from 'grpc-health-check';
import { JobEvents } from './jobs/job-events.js';
import { JobService } from './jobs/job-service.js';
import { MaintenanceJobs } from './jobs/maintenance-jobs.js';
import { Lifecycle } from './lifecycle/lifecycle.js';
import { ReadModel } from './lifecycle/read-model.js';
import { EventBus } from './events/event-bus.js';
import { raiseWindowsAfterBind, raiseWindowsBeforeBind } from './grpc/server-flow-control.js';
import { HubMetrics } from './metrics.js';
import { loadOrCreateCa } from './pki/ca-store.js';
import { ChunkStoreWorkers, Repository } from './repository/index.js';
import { startRestServer } from './rest/server.js';
import type { CertificateAuthority } from './pki/ca.js';
import { tuneGarbageCollector } from '../shared/gc-tuning.js';

/** A running hub: database, CA, the agents' gRPC service and the sessions it holds. */
export class Hub {
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly cfg: HubConfig & { hubId: string },
    readonly log: Logger,
    readonly db: DatabaseHandle,
    readonly orm: Orm,
    readonly ca: CertificateAuthority,
    readonly registry: SessionRegistry,
    readonly presence: Presence,
    readonly server: Server,
    readonly port: number,
    /** The REST API (fastify); closed first on stop. */
    readonly rest: FastifyInstance,
    readonly httpPort: number,
    readonly repo: Repository,
    /** The threads the repository stores uploaded chunks on; closed on stop, once no stream is left. */
    readonly chunkWorkers: ChunkStoreWorkers,
    readonly jobs: JobService,
    readonly maintenance: MaintenanceJobs,
    readonly lifecycle: Lifecycle,
    readonly metrics: HubMetrics,
    readonly events: EventBus,
    readonly admin: AdminService,
    readonly health: HealthImplementation,
  ) {}

  static async start(cfg: HubConfig & { hubId: string }, log: Logger): Promise<Hub> {
    tuneGarbageCollector();
    const db = await openDatabase(cfg, log);
    let orm: Orm | null = null;
    let events: EventBus | null = null;
    let workers: ChunkStoreWorkers | null = null;
    try {
      orm = await openOrm(db.url, log, cfg.dbPoolMax);
      await migrate(orm, db.url, log);
      const ca = await loadOrCreateCa(orm.em.fork());
      const registry = new SessionRegistry(
        { hubId: cfg.hubId, heartbeatIntervalMs: cfg.heartbeatIntervalMs, heartbeatGraceMs: cfg.heartbeatGraceMs, helloTimeoutMs: cfg.helloTimeoutMs },
        log,
      );
      const presence = new Presence(
        orm,
        { hubId: cfg.hubId, flushIntervalMs: cfg.presenceFlushMs, staleAfterMs: cfg.presenceFlushMs + cfg.heartbeatGraceMs },
        log,
        (agentId, epoch) => registry.fenced(agentId, epoch),
      );
      registry.presence = presence;
      await presence.markHeldAgentsOffline();

      const chunkWorkers = new ChunkStoreWorkers({ size: cfg.chunkWorkers });
      workers = chunkWorkers;
      const repo = await openRepository(cfg.repositoryPath ?? join(cfg.dataDir, 'repository'), chunkWorkers);
      const metrics = new HubMetrics(orm);
      const bus = new EventBus({ databaseUrl: db.url, bufferSize: cfg.eventBufferSize, progressIntervalMs: 1000 }, log);
      events = bus;
      await bus.start();
      // The job service wakes the lifecycle's dispatcher, which is built from it: hence the late binding.
      const jobs = new JobService(orm, () => lifecycle.dispatcher.kick());
      const maintenance = new MaintenanceJobs(orm, repo, db.url, log);
      const lifecycle = new Lifecycle(orm, registry, jobs, maintenance, repo, cfg, metrics, log);
      registry.jobEvents = new JobEvents(orm, repo, log, {
        jobEnded: () => lifecycle.jobEnded(),
        abortOnAgent: (a, j, r) => lifecycle.abortOnAgent(a, j, r),
        backupCommitted: (seconds) => metrics.backupDuration.observe(seconds),
      }, cfg.progressWriteIntervalMs);
      registry.lifecycle = lifecycle;
      const onDataLoss = async (jobId: string, msg: string) => {
        const job = await jobs.failWithDataLoss(jobId, msg);
        if (job?.agentId) lifecycle.abortOnAgent(job.agentId, jobId, `DATA_LOSS: ${msg}`);
      };

      const { certChainPem, keyPem } = await ca.issueServerCert([HUB_TLS_NAME, ...cfg.tlsNames]);
      const server = new Server({ ...serverKeepalive, 'grpc.max_receive_message_length': DATA_MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': DATA_MAX_MESSAGE_BYTES });
      raiseWindowsBeforeBind(server, cfg.grpcWindowBytes, log);
      server.addService(agentServiceDefinition, agentServiceHandlers({ orm, ca, registry, log }));
      server.addService(dataServiceDefinition, dataServiceHandlers({ orm, repo, log, onDataLoss: (jobId, msg) => void onDataLoss(jobId, msg).catch((err: unknown) => log.error({ err, job_id: jobId }, 'cannot record data loss')) }));
      const read = new ReadModel(orm);
      // Operators reach the AdminService on the agents' port, with an API token instead of a client certificate.
      const admin = new AdminService({ orm, log, read, lifecycle, events: bus, metrics, caFingerprint: ca.fingerprint });
      server.addService(AdminServiceService, admin.handlers());
      const health = addDiscoveryServices(server);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(cfg.listen, hubServerCredentials(ca.certPem, certChainPem, keyPem), (err, p) => (err ? reject(err) : resolve(p))),
      );
      raiseWindowsAfterBind(server, cfg.grpcWindowBytes, log);
      const rest = await startRestServer(
        { orm, log, read, lifecycle, events: bus, metrics },
        { listen: cfg.httpListen, bodyLimitBytes: cfg.apiBodyLimitBytes, sseHeartbeatMs: cfg.sseHeartbeatMs, metricsToken: cfg.metricsToken },
      ).catch((err: unknown) => {
        server.forceShutdown();
        throw err;
      });
      registry.start();
      presence.start();
      lifecycle.start();
      log.info({ listen: cfg.listen, port, http_port: rest.port, embedded_db: db.embedded, ca_sha256: ca.fingerprint }, 'hub started');
      return new Hub(cfg, log, db, orm, ca, registry, presence, server, port, rest.app, rest.port, repo, chunkWorkers, jobs, maintenance, lifecycle, metrics, bus, admin, health);
    } catch (err) {
      await workers?.close();
      await events?.stop();
      await orm?.close();
      await db.stop();
      throw err;
    }
  }

  /**
   * Graceful stop: tell every agent to drain, end the streams, record them offline, then
   * close the listener and the database. Streams still open at the deadline are cut.
   */
  stop(reason = 'hub shutting down'): Promise<void> {
    this.stopping ??= (async () => {
      const deadline = Date.now() + this.cfg.shutdownTimeoutMs;
      // REST first: no new API call may start work on a hub that is going away.
      await this.rest.close();
      this.health.setStatus('', 'NOT_SERVING');
      this.health.setStatus(ADMIN_SERVICE_NAME, 'NOT_SERVING');
      this.admin.close();
      // Close the listener first: agents told to come back must not reconnect to this hub.
      const listenerClosed = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
      const drained = this.registry.drainAll(reason, this.cfg.drainReconnectMs);
      this.log.info({ agents: drained, reason }, 'draining agent streams');
      await this.lifecycle.stop();
      await this.events.stop();
      await this.presence.stop();
      const cut = setTimeout(() => {
        this.log.warn('streams still open at the deadline; cutting them');
        this.server.forceShutdown();
      }, Math.max(0, deadline - Date.now() - 1000));
      await listenerClosed;
      clearTimeout(cut);
      // Every stream has ended or been cut: no upload is left to store.
      await this.chunkWorkers.close();
      await this.presence.settle();
      // One statement records every stream this hub held as offline, whatever the per-session
      // writes managed; agents already attached to another hub are not touched.
      await this.presence.markHeldAgentsOffline();
      await this.orm.close();
      await this.db.stop();
      this.log.info('hub stopped');
    })();
    return this.stopping;
  }
}

/** Opens the chunk repository, creating it on first start. */
async function openRepository(root: string, workers: ChunkStoreWorkers): Promise<Repository> {
  return existsSync(root) ? Repository.open(root, { workers }) : Repository.create(root, { workers });
}

