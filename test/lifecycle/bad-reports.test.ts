/**
 * Late, duplicate, reordered and foreign agent events, through flows and executions. The hub is
 * real (in process: real gRPC with mTLS, real PostgreSQL); the agent is a test double that
 * speaks the wire protocol by hand, because a real agent never sends a report out of order on
 * purpose, and these orders are exactly what the test must provoke.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createJoinToken } from '../../hub/agents/join-tokens.js';
import type { Hub } from '../../hub/hub.js';
import { EventDisposition, JobPhase, JobStatus, type ConnectResponse, type JobEvent } from '../../shared/gen/backhaul/v1/agent.js';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { startInProcessHub } from '../support/in-process-hub.js';
import { eventually } from '../support/processes.js';
import { enrollRaw, rawStream, type Enrolled, type RawStream } from '../support/raw-agent.js';
import { assertInvariants } from './invariants.js';

let db: TestDatabase;
let hub: Hub;
let address: string;
let agent: Enrolled;
let stream: RawStream;
const MB = 1_000_000;
const targets = ['vm-a', 'vm-b'].map((id) => ({ id, name: id, driver: 'file', disks: [{ name: 'sda', path: `/img/${id}.raw`, sizeBytes: 100 * MB }] }));

beforeAll(async () => {
  db = await createTestDatabase('bh_reports');
  hub = await startInProcessHub(db.url, { BACKHAUL_HUB_DISPATCH_INTERVAL_MS: '100' });
  address = `127.0.0.1:${hub.port}`;
  agent = await enrollRaw(address, hub.ca.certPem, (await createJoinToken(hub.orm.em.fork(), 60_000)).token, 'reports-agent');
  stream = rawStream(address, agent);
  stream.hello({ agentId: agent.agentId, inventory: targets, capabilities: { drivers: ['file'], maxConcurrentJobs: 4 } });
  await stream.helloAck();
});

afterEach(async () => {
  await assertInvariants(db.url);
});

afterAll(async () => {
  stream?.close();
  await hub?.stop();
  await db?.drop();
});

/** Runs a flow over the given targets, accepts every start command, and returns the job ids by target ref. */
async function runAndAccept(name: string, refs: string[]): Promise<{ executionId: string; jobs: Map<string, string> }> {
  const rows = await eventually(async () => {
    const r = await query<{ id: string; ref: string }>(db.url, 'select id, ref from targets where agent_id = $1 and ref = any($2)', [agent.agentId, refs]);
    return r.length === refs.length ? r : null;
  });
  const from = stream.received.length;
  const flowId = await hub.lifecycle.createFlow({ name, targetIds: rows.map((r) => r.id) });
  const executionId = await hub.lifecycle.runFlow(flowId, 'api');
  const jobs = new Map<string, string>();
  for (let i = 0; i < refs.length; i++) {
    const frame = await stream.next((f) => isStart(f) && !jobs.has(startOf(f).target!.id), 10_000, from);
    const cmd = (frame.frame as Extract<ConnectResponse['frame'], { $case: 'command' }>).value;
    jobs.set(startOf(frame).target!.id, startOf(frame).jobId);
    stream.send({ $case: 'commandAck', value: { commandId: cmd.commandId, accepted: true, errorCode: '', message: '' } });
  }
  return { executionId, jobs };
}

const isStart = (f: ConnectResponse) => f.frame?.$case === 'command' && f.frame.value.kind?.$case === 'startBackup';
function startOf(f: ConnectResponse) {
  const k = (f.frame as Extract<ConnectResponse['frame'], { $case: 'command' }>).value.kind as Extract<NonNullable<ConnectResponse['frame']>, { $case: 'command' }>['value']['kind'] & { $case: 'startBackup' };
  return k.value;
}

let seq = 1000;
const progress = (phase: JobPhase, done: number, total = 100 * MB): JobEvent['event'] => ({
  $case: 'progress',
  value: { phase, bytesTotal: total, bytesDone: done, bytesRead: done, bytesTransferred: done, bytesSent: done, bytesReused: 0, bytesZero: 0, rateBytesPerSecond: 1e6, etaSeconds: 5, busy: undefined, note: '' },
});
const failed = (msg: string): JobEvent['event'] => ({ $case: 'final', value: { status: JobStatus.JOB_STATUS_FAILED, errorCode: 'READ_FAILED', errorMessage: msg, disks: [] } });

/** Sends one event on a stream and returns the hub's acknowledgement of it. */
async function send(s: RawStream, jobId: string, eventSeq: number, event: JobEvent['event']) {
  const from = s.received.length;
  s.send({ $case: 'jobEvent', value: { seq: eventSeq, jobId, at: new Date(), event } });
  const ack = await s.next((f) => f.frame?.$case === 'eventAck' && f.frame.value.seq === eventSeq, 10_000, from);
  return (ack.frame as Extract<ConnectResponse['frame'], { $case: 'eventAck' }>).value;
}

const jobRow = async (id: string) =>
  (await query<{ status: string; phase: string | null; progress: Record<string, unknown> | null; error_code: string | null; error_message: string | null }>(
    db.url,
    'select status, phase, progress, error_code, error_message from jobs where id = $1',
    [id],
  ))[0]!;

describe('bad reports', () => {
  it('reordered and duplicated events end in the same state as the same events in order', async () => {
    const { executionId, jobs } = await runAndAccept('reorder', ['vm-a', 'vm-b']);
    const base = (seq += 100);
    const events: [number, JobEvent['event']][] = [
      [base + 1, progress(JobPhase.JOB_PHASE_SNAPSHOTTING, 0)],
      [base + 2, progress(JobPhase.JOB_PHASE_TRANSFERRING, 25 * MB)],
      [base + 3, progress(JobPhase.JOB_PHASE_TRANSFERRING, 60 * MB)],
      [base + 4, progress(JobPhase.JOB_PHASE_FINALIZING, 100 * MB)],
    ];
    const inOrder = jobs.get('vm-a')!;
    for (const [s, e] of events) expect((await send(stream, inOrder, s, e)).disposition).toBe(EventDisposition.EVENT_DISPOSITION_APPLIED);

    const shuffled = jobs.get('vm-b')!;
    const dispositions: EventDisposition[] = [];
    for (const i of [2, 0, 3, 1, 1, 2, 0]) dispositions.push((await send(stream, shuffled, events[i]![0], events[i]![1])).disposition);
    // Only the newest-so-far event applies; anything older or repeated is acknowledged and ignored.
    expect(dispositions).toEqual([1, 2, 1, 2, 2, 2, 2].map((d) => d as EventDisposition));
    const a = await jobRow(inOrder);
    const b = await jobRow(shuffled);
    expect(b).toEqual(a);
    expect(a).toMatchObject({ status: 'running', phase: 'finalizing', progress: expect.objectContaining({ bytesDone: 100 * MB }) });

    // A later report with zeros (an agent that lost its counters) never wipes good data.
    expect((await send(stream, shuffled, base + 5, progress(JobPhase.JOB_PHASE_UNSPECIFIED, 0, 0))).disposition).toBe(EventDisposition.EVENT_DISPOSITION_APPLIED);
    expect((await jobRow(shuffled)).progress).toMatchObject({ bytesDone: 100 * MB, bytesTotal: 100 * MB });
    expect((await jobRow(shuffled)).phase).toBe('finalizing');

    for (const id of [inOrder, shuffled]) await send(stream, id, base + 10, failed('disk went away'));
    const e = (await query(db.url, 'select status, jobs_failed, completed_at from executions where id = $1', [executionId]))[0]!;
    expect(e).toMatchObject({ status: 'failed', jobs_failed: 2 });
  });

  it('events about a terminal job are acknowledged and ignored, and an agent still running it is told to abort', async () => {
    const { executionId, jobs } = await runAndAccept('late', ['vm-a']);
    const job = jobs.get('vm-a')!;
    const base = (seq += 100);
    await send(stream, job, base + 1, progress(JobPhase.JOB_PHASE_TRANSFERRING, 10 * MB));
    const end = await send(stream, job, base + 2, failed('source unreadable'));
    expect(end).toMatchObject({ disposition: EventDisposition.EVENT_DISPOSITION_APPLIED, jobStatus: JobStatus.JOB_STATUS_FAILED });
    const ended = await jobRow(job);

    // A duplicate final with another verdict, and a late progress report with a higher seq.
    const dup = await send(stream, job, base + 2, { $case: 'final', value: { status: JobStatus.JOB_STATUS_SUCCEEDED, errorCode: '', errorMessage: '', disks: [] } });
    expect(dup).toMatchObject({ disposition: EventDisposition.EVENT_DISPOSITION_IGNORED, jobStatus: JobStatus.JOB_STATUS_FAILED });
    const from = stream.received.length;
    const late = await send(stream, job, base + 3, progress(JobPhase.JOB_PHASE_TRANSFERRING, 90 * MB));
    expect(late).toMatchObject({ disposition: EventDisposition.EVENT_DISPOSITION_IGNORED, jobStatus: JobStatus.JOB_STATUS_FAILED });
    const abort = await stream.next((f) => f.frame?.$case === 'command' && f.frame.value.kind?.$case === 'abortJob', 10_000, from);
    expect(abort.frame?.$case === 'command' && abort.frame.value.kind?.$case === 'abortJob' && abort.frame.value.kind.value.jobId).toBe(job);
    expect(await jobRow(job)).toEqual(ended);
    expect((await query(db.url, 'select status from executions where id = $1', [executionId]))[0]!.status).toBe('failed');
  });

  it("refuses another agent's reports on a job, and the job is unchanged", async () => {
    const { jobs } = await runAndAccept('foreign', ['vm-a']);
    const job = jobs.get('vm-a')!;
    await send(stream, job, (seq += 100), progress(JobPhase.JOB_PHASE_TRANSFERRING, 30 * MB));
    const before = await jobRow(job);

    const other = await enrollRaw(address, hub.ca.certPem, (await createJoinToken(hub.orm.em.fork(), 60_000)).token, 'intruder');
    const s2 = rawStream(address, other);
    s2.hello({ agentId: other.agentId });
    await s2.helloAck();
    expect((await send(s2, job, seq + 1, progress(JobPhase.JOB_PHASE_FINALIZING, 100 * MB))).disposition).toBe(EventDisposition.EVENT_DISPOSITION_REFUSED);
    expect((await send(s2, job, seq + 2, failed('not mine'))).disposition).toBe(EventDisposition.EVENT_DISPOSITION_REFUSED);
    s2.close();
    expect(await jobRow(job)).toEqual(before);

    await send(stream, job, seq + 3, failed('test done'));
    expect((await jobRow(job)).status).toBe('failed');
  });
});
