/**
 * The hub's side of backup and restore: a real hub (in process), real gRPC with mTLS, real
 * PostgreSQL and a real repository on disk. The agent here is a test double that speaks the
 * wire protocol by hand, so each hub rule (commit only when every chunk is present, refuse
 * wrong content, refuse other agents' jobs) can be provoked exactly.
 */
import { createHash, randomBytes } from 'node:crypto';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJoinToken } from '../../hub/agents/join-tokens.js';
import type { Hub } from '../../hub/hub.js';
import { CHUNK_SIZE, zstdCompress } from '../../hub/repository/index.js';
import { JobStatus, type ConnectResponse } from '../../shared/gen/backhaul/v1/agent.js';
import { DataServiceClient, type DownloadChunksResponse, type UploadChunksResponse } from '../../shared/gen/backhaul/v1/data.js';
import { HUB_TLS_NAME } from '../../shared/grpc-options.js';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';
import { enrollRaw, rawStream, type Enrolled, type RawStream } from '../support/raw-agent.js';

let db: TestDatabase;
let hub: Hub;
let address: string;
let agent: Enrolled;
let stream: RawStream;
let data: DataServiceClient;
let seq = 0;

const IMAGE = Buffer.concat([randomBytes(CHUNK_SIZE), Buffer.alloc(CHUNK_SIZE), randomBytes(CHUNK_SIZE + 4096)]);
const sha = (b: Buffer) => createHash('sha256').update(b).digest();
const chunks = () => Array.from({ length: Math.ceil(IMAGE.length / CHUNK_SIZE) }, (_, i) => IMAGE.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE));
const isZero = (b: Buffer) => b.every((x) => x === 0);
const target = { id: 'vm1', name: 'vm one', driver: 'file', disks: [{ name: 'sda', path: '/img/vm1.raw', sizeBytes: IMAGE.length }] };

function dataClient(e: Enrolled): DataServiceClient {
  return new DataServiceClient(address, credentials.createSsl(Buffer.from(e.caPem), Buffer.from(e.keyPem), Buffer.from(e.certPem)), {
    'grpc.ssl_target_name_override': HUB_TLS_NAME,
    'grpc.max_receive_message_length': 64 << 20,
  });
}

const call = <T>(fn: (cb: (err: ServiceError | null, res: T) => void) => void) => new Promise<T>((resolve, reject) => fn((err, res) => (err ? reject(err) : resolve(res))));

/** Answers the next command of the given kind with an acceptance, and returns it. */
async function acceptNext(kind: 'startBackup' | 'startRestore', from = stream.received.length) {
  const frame = await stream.next((f) => f.frame?.$case === 'command' && f.frame.value.kind?.$case === kind, 10_000, from);
  const cmd = (frame.frame as Extract<ConnectResponse['frame'], { $case: 'command' }>).value;
  stream.send({ $case: 'commandAck', value: { commandId: cmd.commandId, accepted: true, errorCode: '', message: '' } });
  return cmd;
}

async function upload(jobId: string, items: { digest: Buffer; plain: Buffer }[]): Promise<UploadChunksResponse[]> {
  const s = data.uploadChunks();
  const acks: UploadChunksResponse[] = [];
  return new Promise((resolve, reject) => {
    s.on('data', (r: UploadChunksResponse) => acks.push(r));
    s.on('error', reject);
    s.on('end', () => resolve(acks));
    for (const it of items) s.write({ jobId, digest: it.digest, data: zstdCompress(it.plain), plaintextLength: it.plain.length });
    s.end();
  });
}

async function sendEvent(jobId: string, event: { $case: 'final'; value: { status: JobStatus; errorCode: string; errorMessage: string; disks: never[] } }, useSeq = ++seq) {
  const from = stream.received.length;
  stream.send({ $case: 'jobEvent', value: { seq: useSeq, jobId, at: new Date(), event } });
  const ack = await stream.next((f) => f.frame?.$case === 'eventAck' && f.frame.value.seq === useSeq, 15_000, from);
  return (ack.frame as Extract<ConnectResponse['frame'], { $case: 'eventAck' }>).value;
}

const final = (s: JobStatus) => ({ $case: 'final' as const, value: { status: s, errorCode: '', errorMessage: '', disks: [] as never[] } });

async function backupOnce(): Promise<{ jobId: string }> {
  // The job is queued at once; the dispatcher sends it to the connected agent.
  const from = stream.received.length;
  const job = await hub.jobs.startBackup(agent.agentId, 'vm1');
  expect(job.status).toBe('queued');
  const cmd = await acceptNext('startBackup', from);
  expect((await query(db.url, 'select status from jobs where id = $1', [job.id]))[0]!.status).toBe('dispatched');
  expect(cmd.kind?.$case === 'startBackup' && cmd.kind.value.jobId).toBe(job.id);
  return { jobId: job.id };
}

beforeAll(async () => {
  db = await createTestDatabase();
  hub = await startInProcessHub(db.url);
  address = `127.0.0.1:${hub.port}`;
  const t = await createJoinToken(hub.orm.em.fork(), 60_000);
  agent = await enrollRaw(address, hub.ca.certPem, t.token, 'data-agent');
  stream = rawStream(address, agent);
  stream.hello({ agentId: agent.agentId, inventory: [target] });
  await stream.helloAck();
  data = dataClient(agent);
});

afterAll(async () => {
  stream?.close();
  data?.close();
  await hub?.stop();
  await db?.drop();
});

describe('data plane: backup commit', () => {
  it('commits a backup only after its chunks and index arrived, and the job ends succeeded', async () => {
    const { jobId } = await backupOnce();
    const parts = chunks();
    const nonZero = parts.filter((p) => !isZero(p));
    const digests = parts.map((p) => (isZero(p) ? Buffer.alloc(32) : sha(p)));
    const missing = await call<{ digests: Buffer }>((cb) => data.missingChunks({ jobId, digests: Buffer.concat(nonZero.map(sha)) }, cb));
    expect(missing.digests.length).toBe(32 * nonZero.length);

    // Reporting success before the index arrived is a claim the hub cannot commit.
    const early = await sendEvent(jobId, final(JobStatus.JOB_STATUS_SUCCEEDED));
    expect(early.jobStatus).toBe(JobStatus.JOB_STATUS_FAILED);
    const [failed] = await query(db.url, 'select status, error_code, completed_at from jobs where id = $1', [jobId]);
    expect(failed).toMatchObject({ status: 'failed', error_code: 'COMMIT_FAILED' });
    expect(failed!.completed_at).not.toBeNull();

    // A fresh job does it properly.
    const { jobId: j2 } = await backupOnce();
    const acks = await upload(j2, nonZero.map((p) => ({ digest: sha(p), plain: p })));
    expect(acks.map((a) => a.created)).toEqual([true, true, true]);
    // They were checked and written on the hub's chunk store threads (idle ones exit after 10 s).
    expect(hub.chunkWorkers.threadCount).toBeGreaterThan(0);
    const put = await call<{ missingChunks: number }>((cb) => data.putIndex({ jobId: j2, diskName: 'sda', diskSize: IMAGE.length, digests: Buffer.concat(digests) }, cb));
    expect(put.missingChunks).toBe(0);
    const ack = await sendEvent(j2, final(JobStatus.JOB_STATUS_SUCCEEDED));
    expect(ack.jobStatus).toBe(JobStatus.JOB_STATUS_SUCCEEDED);
    const [job] = await query(db.url, 'select status, backup_id, completed_at from jobs where id = $1', [j2]);
    expect(job!.status).toBe('succeeded');
    const [backup] = await query(db.url, 'select disks, bytes_total from backups where id = $1', [job!.backup_id]);
    expect(backup!.bytes_total).toBe(IMAGE.length);
    expect(backup!.disks).toMatchObject([{ name: 'sda', sizeBytes: IMAGE.length, chunkCount: 4, zeroChunks: 1 }]);

    // A duplicate of the final report changes nothing and says so.
    const dup = await sendEvent(j2, final(JobStatus.JOB_STATUS_FAILED));
    expect(dup).toMatchObject({ disposition: 2, jobStatus: JobStatus.JOB_STATUS_SUCCEEDED });
    expect((await query(db.url, 'select status from jobs where id = $1', [j2]))[0]!.status).toBe('succeeded');

    // Data calls for a terminal job are refused.
    const late = await call((cb) => data.missingChunks({ jobId: j2, digests: digests[0]! }, cb)).catch((e: ServiceError) => e);
    expect((late as ServiceError).code).toBe(status.FAILED_PRECONDITION);
  });

  it('refuses a chunk whose content does not match its digest, stores nothing, and fails the job with DATA_LOSS', async () => {
    const { jobId } = await backupOnce();
    const liar = randomBytes(4096);
    const claimed = sha(randomBytes(16));
    const err = (await upload(jobId, [{ digest: claimed, plain: liar }]).catch((e: ServiceError) => e)) as ServiceError;
    expect(err.code).toBe(status.DATA_LOSS);
    // The repository's message, unchanged through the worker thread that refused it.
    expect(err.details).toBe(`DATA_LOSS: chunk ${claimed.toString('hex')}: plaintext hashes to ${sha(liar).toString('hex')}`);
    await expect(hub.repo.hasChunk(claimed.toString("hex"))).resolves.toBe(false);
    await expect.poll(async () => (await query(db.url, 'select status, error_code from jobs where id = $1', [jobId]))[0]).toEqual({ status: 'failed', error_code: 'DATA_LOSS' });
    const abort = await stream.next((f) => f.frame?.$case === 'command' && f.frame.value.kind?.$case === 'abortJob');
    expect(abort.frame?.$case === 'command' && abort.frame.value.kind?.$case === 'abortJob' && abort.frame.value.kind.value.jobId).toBe(jobId);
  });

  it('refuses events and data calls about another agent’s job', async () => {
    const { jobId } = await backupOnce();
    const t = await createJoinToken(hub.orm.em.fork(), 60_000);
    const other = await enrollRaw(address, hub.ca.certPem, t.token, 'other');
    const otherData = dataClient(other);
    const err = (await call((cb) => otherData.missingChunks({ jobId, digests: Buffer.alloc(32) }, cb)).catch((e: ServiceError) => e)) as ServiceError;
    expect(err.code).toBe(status.PERMISSION_DENIED);
    otherData.close();
    const s2 = rawStream(address, other);
    s2.hello({ agentId: other.agentId });
    await s2.helloAck();
    s2.send({ $case: 'jobEvent', value: { seq: 1, jobId, at: new Date(), event: final(JobStatus.JOB_STATUS_FAILED) } });
    const ack = await s2.next((f) => f.frame?.$case === 'eventAck');
    expect(ack.frame).toMatchObject({ value: { disposition: 3 } });
    s2.close();
    expect((await query(db.url, 'select status from jobs where id = $1', [jobId]))[0]!.status).toBe('dispatched');
    await sendEvent(jobId, { $case: 'final', value: { status: JobStatus.JOB_STATUS_CANCELLED, errorCode: 'CANCELLED', errorMessage: 'test done', disks: [] } });
  });
});

describe('data plane: restore', () => {
  it('serves a committed backup’s index and its chunks to a restore job, and records the reported SHA-256', async () => {
    const [backup] = await query<{ id: string }>(db.url, 'select id from backups order by created_at desc limit 1');
    const mark = stream.received.length;
    const job = await hub.jobs.startRestore(backup!.id, agent.agentId, [{ diskName: 'sda', path: '/tmp/restored.raw', format: 'raw', create: true }]);
    await acceptNext('startRestore', mark);
    const index = await call<{ diskSize: number; digests: Buffer }>((cb) => data.getIndex({ jobId: job.id, backupId: backup!.id, diskName: 'sda' }, cb));
    expect(index.diskSize).toBe(IMAGE.length);
    const wanted: Buffer[] = [];
    for (let i = 0; i < index.digests.length; i += 32) if (!index.digests.subarray(i, i + 32).equals(Buffer.alloc(32))) wanted.push(index.digests.subarray(i, i + 32));
    const got = new Map<string, Buffer>();
    await new Promise<void>((resolve, reject) => {
      const s = data.downloadChunks({ jobId: job.id, digests: Buffer.concat(wanted) });
      s.on('data', (r: DownloadChunksResponse) => got.set(r.digest.toString('hex'), r.data));
      s.on('error', reject);
      s.on('end', resolve);
    });
    const rebuilt = Buffer.concat(
      Array.from({ length: index.digests.length / 32 }, (_, i) => {
        const d = index.digests.subarray(i * 32, i * 32 + 32);
        const len = Math.min(CHUNK_SIZE, IMAGE.length - i * CHUNK_SIZE);
        return d.equals(Buffer.alloc(32)) ? Buffer.alloc(len) : got.get(d.toString('hex'))!;
      }),
    );
    expect(sha(rebuilt).equals(sha(IMAGE))).toBe(true);
    const from = stream.received.length;
    stream.send({
      $case: 'jobEvent',
      value: { seq: ++seq, jobId: job.id, at: new Date(), event: { $case: 'final', value: { status: JobStatus.JOB_STATUS_SUCCEEDED, errorCode: '', errorMessage: '', disks: [{ diskName: 'sda', sizeBytes: IMAGE.length, nextBitmap: '', fullReadReason: '', sha256: sha(rebuilt).toString('hex') }] } } },
    });
    await stream.next((f) => f.frame?.$case === 'eventAck' && f.frame.value.seq === seq, 10_000, from);
    const [row] = await query(db.url, 'select status, result from jobs where id = $1', [job.id]);
    expect(row).toEqual({ status: 'succeeded', result: { disks: [{ name: 'sda', sizeBytes: IMAGE.length, sha256: sha(IMAGE).toString('hex') }] } });
  });
});
