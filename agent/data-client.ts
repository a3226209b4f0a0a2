import { connectivityState, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { getDefaultHighWaterMark, setDefaultHighWaterMark } from 'node:stream';
import { BulkDataServiceClient, encodeUploadChunksRequestInPlace } from '../shared/data-plane-codec.js';
import type { DataServiceClient, DownloadChunksResponse, UploadChunksRequest, UploadChunksResponse } from '../shared/gen/backhaul/v1/data.js';
import { clientKeepalive, HUB_TLS_NAME } from '../shared/grpc-options.js';
import type { AgentCredentials } from './state.js';

const MAX_MESSAGE = 64 * 1024 * 1024;

/**
 * Upload connections per agent, each with its own HTTP/2 flow-control window (grpc-js 1.14
 * servers keep the 64 KiB default and have no option to raise it). Measured on the bench: with
 * the hub's checks off its event loop the window no longer limits one connection (raising it to
 * 16 MiB gained nothing), while 4 or 8 connections cost 20-120 MiB more agent RSS and more CPU
 * on both sides for no faster backup. So one, unless a link with a long round trip needs more.
 */
export const UPLOAD_CONNECTIONS = 1;

/**
 * How long a data-plane call waits for the hub to accept a connection before it fails. The data
 * channel keeps its own connection and backoff, apart from the control stream: after a hub restart
 * the agent's control stream may be back while this channel still sits in a failed state, and
 * without the wait a job the new hub just dispatched would fail at once with UNAVAILABLE.
 */
export const CONNECT_WAIT_MS = 60_000;

/**
 * Downloaded chunks (4 MiB messages) a download stream holds decoded before the caller takes them.
 * grpc-js keeps reading until its stream's buffer is full, and an object-mode stream's default
 * is 16 messages: with the restore writer slower than the hub, one stream held 13 (52 MiB) and
 * the agent's peak RSS reached 295 MiB.
 */
export const DOWNLOAD_BUFFERED_CHUNKS = 2;

export class DataPlaneError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly grpcCode?: number,
  ) {
    super(message);
    this.name = 'DataPlaneError';
  }
}

function wrap(err: ServiceError): DataPlaneError {
  const code = err.metadata?.get('backhaul-error-code')[0]?.toString() ?? 'DATA_PLANE_ERROR';
  return new DataPlaneError(code, err.details || err.message, err.code);
}

/** An agent's client for the hub's DataService, on a channel of its own (never the control stream's). */
export class DataClient {
  private readonly client: DataServiceClient;
  /** One channel (so one TCP connection) per upload stream; they connect on first use. */
  private readonly uploadClients: DataServiceClient[];

  constructor(
    private readonly hub: string,
    creds: Pick<AgentCredentials, 'caPem' | 'keyPem' | 'certPem'>,
    uploadConnections = UPLOAD_CONNECTIONS,
    private readonly connectWaitMs = CONNECT_WAIT_MS,
  ) {
    const channel = () =>
      new BulkDataServiceClient(hub, credentials.createSsl(Buffer.from(creds.caPem), Buffer.from(creds.keyPem), Buffer.from(creds.certPem)), {
        ...clientKeepalive,
        'grpc.ssl_target_name_override': HUB_TLS_NAME,
        'grpc.default_authority': HUB_TLS_NAME,
        'grpc.max_receive_message_length': MAX_MESSAGE,
        'grpc.max_send_message_length': MAX_MESSAGE,
        // A channel of its own (not the control stream's, nor another upload's): its own connection.
        'grpc.use_local_subchannel_pool': 1,
        // HTTP/2's default 64 KiB window stalls 4 MiB chunks on every round trip (measured by the bench).
        'grpc-node.flow_control_window': 8 * 1024 * 1024,
        // grpc-js backs off up to 120 s between attempts; a hub that restarts is back in seconds.
        'grpc.initial_reconnect_backoff_ms': 250,
        'grpc.max_reconnect_backoff_ms': 2_000,
      });
    this.client = channel();
    this.uploadClients = Array.from({ length: Math.max(1, uploadConnections) }, channel);
  }

  close(): void {
    this.client.close();
    for (const c of this.uploadClients) c.close();
  }

  /**
   * Resolves once the client's channel is connected, waiting out a reconnect within connectWaitMs.
   * A call is then made without waiting: if the connection drops again, it fails as it should.
   */
  private ready(client: DataServiceClient): Promise<void> {
    if (client.getChannel().getConnectivityState(false) === connectivityState.READY) return Promise.resolve();
    return new Promise((resolve, reject) =>
      client.waitForReady(Date.now() + this.connectWaitMs, (err) =>
        err
          ? reject(new DataPlaneError('HUB_UNREACHABLE', `the hub's data plane at ${this.hub} accepted no connection within ${this.connectWaitMs / 1000} s`, status.UNAVAILABLE))
          : resolve(),
      ),
    );
  }

  async missingChunks(jobId: string, digests: Buffer): Promise<Buffer> {
    await this.ready(this.client);
    return new Promise((resolve, reject) => this.client.missingChunks({ jobId, digests }, (err, res) => (err ? reject(wrap(err)) : resolve(res.digests))));
  }

  async putIndex(jobId: string, diskName: string, diskSize: number, digests: Buffer): Promise<number> {
    await this.ready(this.client);
    return new Promise((resolve, reject) =>
      this.client.putIndex({ jobId, diskName, diskSize, digests }, (err, res) => (err ? reject(wrap(err)) : resolve(res.missingChunks))),
    );
  }

  async getIndex(jobId: string, backupId: string, diskName: string): Promise<{ diskSize: number; chunkSize: number; digests: Buffer }> {
    await this.ready(this.client);
    return new Promise((resolve, reject) => this.client.getIndex({ jobId, backupId, diskName }, (err, res) => (err ? reject(wrap(err)) : resolve(res))));
  }

  /**
   * Upload streams for a job, one per upload connection. `send` resolves when the hub has stored
   * that chunk; each stream's own flow control holds the sender back when the hub is slower.
   */
  async openUploads(jobId: string): Promise<ChunkUpload[]> {
    await Promise.all(this.uploadClients.map((c) => this.ready(c)));
    return this.uploadClients.map((c) => new ChunkUpload(c, jobId));
  }

  /** Streams chunks in the order asked; each is passed to `onChunk` before the next is taken. */
  async download(jobId: string, digests: Buffer, onChunk: (digest: Buffer, data: Buffer) => Promise<void>, signal?: AbortSignal): Promise<void> {
    await this.ready(this.client);
    // grpc-js offers no option for it: its stream takes the default in force when it is made, here.
    const defaultBuffered = getDefaultHighWaterMark(true);
    setDefaultHighWaterMark(true, DOWNLOAD_BUFFERED_CHUNKS);
    let call;
    try {
      call = this.client.downloadChunks({ jobId, digests });
    } finally {
      setDefaultHighWaterMark(true, defaultBuffered);
    }
    const abort = () => call.cancel();
    signal?.addEventListener('abort', abort, { once: true });
    try {
      for await (const msg of call as AsyncIterable<DownloadChunksResponse>) {
        await onChunk(msg.digest, msg.data);
      }
    } catch (err) {
      if (signal?.aborted) throw new DataPlaneError('CANCELLED', 'the download was cancelled');
      throw (err as ServiceError).code !== undefined ? wrap(err as ServiceError) : err;
    } finally {
      signal?.removeEventListener('abort', abort);
    }
  }
}

export class ChunkUpload {
  private readonly call;
  private readonly waiting = new Map<string, { resolve: (created: boolean) => void; reject: (err: Error) => void }[]>();
  private failure: DataPlaneError | null = null;
  private readonly finished: Promise<void>;
  /** Milliseconds the hub has spent storing this stream's chunks, as its last answer said. */
  storeBusyMs = 0;

  constructor(client: DataServiceClient, private readonly jobId: string) {
    this.call = client.uploadChunks();
    this.call.on('data', (r: UploadChunksResponse) => {
      this.storeBusyMs = Math.max(this.storeBusyMs, r.storeBusyMs);
      const key = r.digest.toString('hex');
      const q = this.waiting.get(key);
      const w = q?.shift();
      if (q && q.length === 0) this.waiting.delete(key);
      w?.resolve(r.created);
    });
    this.finished = new Promise((resolve) => {
      this.call.on('error', (err: ServiceError) => {
        this.failure = wrap(err);
        for (const q of this.waiting.values()) for (const w of q) w.reject(this.failure);
        this.waiting.clear();
        resolve();
      });
      this.call.on('end', () => resolve());
    });
  }

  /** Chunks sent and not yet acknowledged. */
  get pending(): number {
    let n = 0;
    for (const q of this.waiting.values()) n += q.length;
    return n;
  }

  /**
   * Sends one zstd-compressed chunk; resolves with whether the hub created it. `headroom` bytes
   * before `zstd` may be overwritten with the message header (see encodeUploadChunksRequestInPlace).
   */
  async send(digest: Buffer, zstd: Buffer, plaintextLength: number, headroom = 0): Promise<boolean> {
    if (this.failure) throw this.failure;
    const key = digest.toString('hex');
    const done = new Promise<boolean>((resolve, reject) => {
      const q = this.waiting.get(key) ?? [];
      q.push({ resolve, reject });
      this.waiting.set(key, q);
    });
    const message = encodeUploadChunksRequestInPlace({ jobId: this.jobId, digest, data: zstd, plaintextLength }, headroom);
    // Encoded already: the bulk codec's serializer passes a Buffer through.
    if (!this.call.write(message as unknown as UploadChunksRequest)) {
      await new Promise<void>((r) => this.call.once('drain', () => r()));
    }
    return done;
  }

  async close(): Promise<void> {
    this.call.end();
    await this.finished;
    if (this.failure) throw this.failure;
  }

  cancel(): void {
    this.call.cancel();
  }
}
