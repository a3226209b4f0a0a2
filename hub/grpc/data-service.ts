import { type ServerDuplexStream, type ServerUnaryCall, type ServerWritableStream, type sendUnaryData, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { BusyMeter } from '../../shared/busy-meter.js';
import { certificateSha256 } from '../../shared/certs.js';
import { dataServiceWithBulkCodec, encodeDownloadChunksResponseInPlace } from '../../shared/data-plane-codec.js';
import {
  type DownloadChunksRequest,
  type DownloadChunksResponse,
  type GetIndexRequest,
  type GetIndexResponse,
  type MissingChunksRequest,
  type MissingChunksResponse,
  type PutIndexRequest,
  type PutIndexResponse,
  type UploadChunksRequest,
  type UploadChunksResponse,
} from '../../shared/gen/backhaul/v1/data.js';
import { isUuid } from '../../shared/uuid.js';
import type { Logger } from '../../shared/logger.js';
import type { BackupDisk } from '../db/entities/backup.js';
import type { Orm } from '../db/orm.js';
import { HubError, type HubErrorCode } from '../errors.js';
import { CHUNK_SIZE, DIGEST_BYTES, RepositoryError, type Repository } from '../repository/index.js';
import type { ReadChunk } from '../repository/chunk-reads.js';
import { isDatabaseUnavailable } from '../db/unavailable.js';

/** Chunks of one upload stream stored at once: overlaps their fsyncs without unbounded memory. */
const UPLOAD_CONCURRENCY = 4;

/**
 * Chunks of one download stream being read and decoded (on the chunk store threads) ahead of the
 * one being sent: with 2, the bench's restore spent half its time waiting for reads.
 */
const DOWNLOAD_READ_AHEAD = 3;
/** Writes of one download stream that grpc-js has not sent yet; each holds its chunk's buffer. */
const DOWNLOAD_UNSENT = 2;

/** Bulk messages (indexes of 2 TiB disks are 16 MiB) need more than gRPC's 4 MiB default. */
export const DATA_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;


/** Repository errors keep their code; anything unexpected becomes INTERNAL (and is logged by the caller). */
function toHubError(err: unknown): HubError {
  if (err instanceof HubError) return err;
  if (err instanceof RepositoryError) {
    const known: Partial<Record<string, HubErrorCode>> = {
      DATA_LOSS: 'DATA_LOSS',
      INVALID_ARGUMENT: 'INVALID_ARGUMENT',
      CHUNK_MISSING: 'CHUNK_MISSING',
      INDEX_NOT_FOUND: 'INDEX_NOT_FOUND',
      INDEX_CORRUPT: 'INDEX_CORRUPT',
    };
    const code = known[err.code];
    if (code) return new HubError(code, err.message);
  }
  // The agent may retry an outage of the database; it is no fault of the hub's code.
  if (isDatabaseUnavailable(err)) return new HubError('UNAVAILABLE', 'the hub cannot reach its database; retry later');
  return new HubError('INTERNAL', 'the hub failed to handle the request');
}

/** Splits packed 32-byte digests into hex strings, refusing a ragged buffer. */
function unpack(bytes: Buffer, field: string): string[] {
  if (bytes.length % DIGEST_BYTES !== 0) throw new HubError('INVALID_ARGUMENT', `${field} must be a multiple of ${DIGEST_BYTES} bytes`);
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += DIGEST_BYTES) out.push(bytes.subarray(i, i + DIGEST_BYTES).toString('hex'));
  return out;
}

/**
 * The hub side of the data plane. Every call is made by an agent with its certificate and
 * names one of that agent's live jobs; block data is checked by the repository on receipt.
 */
export function dataServiceHandlers(deps: { orm: Orm; repo: Repository; log: Logger; onDataLoss: (jobId: string, message: string) => void }): UntypedServiceImplementation {
  const { orm, repo, log } = deps;

  /** The calling agent must hold the certificate on record and own the job, which must be live. */
  async function authorize(call: { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer; subject?: { CN?: string | string[] } } } | null }, jobId: string, kinds: string[]) {
    const cert = call.getAuthContext()?.sslPeerCertificate;
    if (!cert?.raw) throw new HubError('CLIENT_CERT_REQUIRED', 'the data plane requires an enrolled agent certificate');
    if (!isUuid(jobId)) throw new HubError('INVALID_ARGUMENT', 'job_id must be a UUID');
    const rows = await orm.em
      .fork()
      .getConnection()
      .execute<{ agent_id: string; status: string; kind: string; cert_fingerprint: string }[]>(
        'select j.agent_id, j.status, j.kind, a.cert_fingerprint from jobs j join agents a on a.id = j.agent_id where j.id = ?',
        [jobId],
      );
    const row = rows[0];
    if (!row) throw new HubError('JOB_NOT_FOUND', `job ${jobId} is not known to this hub`);
    if (row.cert_fingerprint !== certificateSha256(cert.raw)) throw new HubError('JOB_NOT_OWNED', `job ${jobId} belongs to another agent`);
    if (!['dispatched', 'running'].includes(row.status)) throw new HubError('JOB_NOT_RUNNING', `job ${jobId} is ${row.status}`);
    if (!kinds.includes(row.kind)) throw new HubError('WRONG_JOB_KIND', `job ${jobId} is a ${row.kind} job`);
    return row;
  }

  const unary =
    <Req, Res>(fn: (call: ServerUnaryCall<Req, Res>) => Promise<Res>) =>
    (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => {
      fn(call).then(
        (res) => cb(null, res),
        (err: unknown) => {
          const e = toHubError(err);
          if (e.code === 'INTERNAL') log.error({ err }, 'data plane call failed');
          cb(e.toGrpc());
        },
      );
    };

  return {
    missingChunks: unary<MissingChunksRequest, MissingChunksResponse>(async (call) => {
      await authorize(call, call.request.jobId, ['backup']);
      const missing = await repo.missingChunks(unpack(call.request.digests, 'digests'));
      return { digests: Buffer.from(missing.join(''), 'hex') };
    }),

    uploadChunks(call: ServerDuplexStream<UploadChunksRequest, UploadChunksResponse>) {
      let jobId: string | null = null;
      let authorized: Promise<void> | null = null;
      let inflight = 0;
      let ended = false;
      let failed = false;
      // Reported with every answer, for the agent's "hub write" busy fraction.
      const storing = new BusyMeter();
      const fail = (err: unknown) => {
        if (failed) return;
        failed = true;
        const e = toHubError(err);
        if (e.code === 'DATA_LOSS' && jobId) deps.onDataLoss(jobId, e.message);
        if (e.code === 'INTERNAL') log.error({ err, job_id: jobId }, 'chunk upload failed');
        call.emit('error', e.toGrpc());
      };
      const finishIfDone = () => {
        if (ended && inflight === 0 && !failed) call.end();
      };
      call.on('data', (req: UploadChunksRequest) => {
        if (failed) return;
        if (authorized === null) {
          jobId = req.jobId;
          authorized = authorize(call, req.jobId, ['backup']).then(() => undefined);
        }
        // A few chunks are stored at once (their fsyncs overlap); beyond that, flow control holds the sender.
        inflight += 1;
        if (inflight >= UPLOAD_CONCURRENCY) call.pause();
        authorized
          .then(async () => {
            if (req.jobId !== jobId) throw new HubError('INVALID_ARGUMENT', 'every chunk of a stream must name the same job');
            if (req.digest.length !== DIGEST_BYTES) throw new HubError('INVALID_ARGUMENT', 'digest must be 32 bytes');
            // A copy: req.data's memory, the whole received message, may move to a chunk store worker.
            const digest = Buffer.from(req.digest);
            const res = await storing.time(() => repo.putChunk(digest.toString('hex'), req.data, 'zstd', { transferPayload: true }));
            if (!failed) call.write({ digest, created: res.created, storeBusyMs: storing.busyMs() });
          })
          .then(
            () => {
              inflight -= 1;
              if (!failed && call.isPaused() && inflight < UPLOAD_CONCURRENCY) call.resume();
              finishIfDone();
            },
            (err: unknown) => {
              inflight -= 1;
              fail(err);
            },
          );
      });
      call.on('end', () => {
        ended = true;
        finishIfDone();
      });
    },

    putIndex: unary<PutIndexRequest, PutIndexResponse>(async (call) => {
      const { jobId, diskName, diskSize, digests } = call.request;
      await authorize(call, jobId, ['backup']);
      if (!diskName) throw new HubError('INVALID_ARGUMENT', 'disk_name is required');
      const list = unpack(digests, 'digests');
      const expected = Math.ceil(diskSize / CHUNK_SIZE);
      if (list.length !== expected) throw new HubError('INVALID_ARGUMENT', `a disk of ${diskSize} bytes has ${expected} chunks, the index has ${list.length}`);
      const nonZero = list.filter((d) => !/^0+$/.test(d));
      const missing = await repo.missingChunks(nonZero);
      await orm.em
        .fork()
        .getConnection()
        .execute(
          `insert into job_disk_indexes (job_id, disk_name, disk_size, digests, received_at) values (?, ?, ?, ?, now())
           on conflict (job_id, disk_name) do update set disk_size = excluded.disk_size, digests = excluded.digests, received_at = now()`,
          [jobId, diskName, diskSize, digests],
        );
      return { missingChunks: missing.length };
    }),

    getIndex: unary<GetIndexRequest, GetIndexResponse>(async (call) => {
      await authorize(call, call.request.jobId, ['backup', 'restore']);
      if (!isUuid(call.request.backupId)) throw new HubError('INVALID_ARGUMENT', 'backup_id must be a UUID');
      const rows = await orm.em.fork().getConnection().execute<{ disks: BackupDisk[] }[]>('select disks from backups where id = ?', [call.request.backupId]);
      const disk = rows[0]?.disks.find((d) => d.name === call.request.diskName);
      if (!disk) throw new HubError('INDEX_NOT_FOUND', `backup ${call.request.backupId} has no disk ${call.request.diskName}`);
      const index = await repo.readIndex(repo.resolveIndexPath(disk.indexPath));
      return { diskSize: index.diskSize, chunkSize: index.chunkSize, digests: index.digests.bytes };
    }),

    downloadChunks(call: ServerWritableStream<DownloadChunksRequest, DownloadChunksResponse>) {
      (async () => {
        await authorize(call, call.request.jobId, ['restore']);
        const digests = unpack(call.request.digests, 'digests');
        // The next chunks are read while one is on the wire (decoded, not hashed: the agent checks
        // each against its digest before writing it, see ReadCheck); a read that is never
        // awaited (the call was cancelled) must not become an unhandled rejection, nor keep its buffer.
        const ahead: Promise<ReadChunk>[] = [];
        let next = 0;
        let unsent = 0;
        let wake: (() => void) | null = null;
        const onCancelled = () => wake?.();
        call.on('cancelled', onCancelled);
        const readAhead = () => {
          while (ahead.length < DOWNLOAD_READ_AHEAD && next < digests.length) {
            const read = repo.readDecoded(digests[next++]!);
            read.catch(() => {});
            ahead.push(read);
          }
        };
        try {
          for (const digest of digests) {
            if (call.cancelled) return;
            readAhead();
            const chunk = await ahead.shift()!;
            // Encoded in the chunk's own buffer; it goes back to the pool once grpc-js has it.
            const message = encodeDownloadChunksResponseInPlace({ digest: Buffer.from(digest, 'hex'), data: chunk.plaintext }, chunk.headroom);
            // Encoded already: the bulk codec's serializer passes a Buffer through. A write holds its
            // buffer until grpc-js has sent it, which the client's flow control paces: at most
            // DOWNLOAD_UNSENT writes wait per stream, whatever the stream's own buffer would take.
            unsent += 1;
            call.write(message as unknown as DownloadChunksResponse, () => {
              chunk.release();
              unsent -= 1;
              wake?.();
            });
            while (unsent >= DOWNLOAD_UNSENT && !call.cancelled) await new Promise<void>((r) => (wake = r));
            wake = null;
          }
        } finally {
          call.off('cancelled', onCancelled);
          for (const read of ahead.splice(0)) void read.then((c) => c.release(), () => {});
        }
        call.end();
      })().catch((err: unknown) => {
        const e = toHubError(err);
        if (e.code === 'INTERNAL') log.error({ err }, 'chunk download failed');
        call.emit('error', e.toGrpc());
      });
    },
  };
}

export const dataServiceDefinition = dataServiceWithBulkCodec;
