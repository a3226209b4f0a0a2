/**
 * A diagnostic, not part of `npm run bench`: how fast 4 MiB chunks cross grpc-js over mTLS on
 * loopback in Backhaul's DataService shape (same generated service, same message sizes, the
 * hub's pause-store-ack-resume upload handler, the agent's write-then-drain sender), with and
 * without larger HTTP/2 flow-control windows. Two processes, like agent and hub.
 *
 *   node dist/test/bench/data-plane/transport-probe.js [chunks=64] [storeMs=25]
 *
 * storeMs stands in for the hub's per-chunk putChunk (decode + SHA-256 + write + 2 fsyncs).
 * grpc-js 1.14 has no server option for its receive window (grpc-node PR #3058 adds one), so the
 * "server window" cases raise it the way a hub would have to today: on each HTTP/2 session.
 */
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, Server, ServerCredentials, type ServerDuplexStream, type ServerWritableStream } from '@grpc/grpc-js';
import { raiseServerWindows } from './http2-window-patch.js';
import { DataServiceClient, DataServiceService, type DownloadChunksRequest, type DownloadChunksResponse, type UploadChunksRequest, type UploadChunksResponse } from '../../../shared/gen/backhaul/v1/data.js';

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
const WINDOW = 16 * MiB;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The server role: a DataService with the hub's upload handling and a plain download stream. */
async function serve(dir: string, raiseWindow: boolean, storeMs: number): Promise<void> {
  // What the hub would need (grpc-js 1.14 has no server option for it): see http2-window-patch.ts.
  if (raiseWindow) raiseServerWindows(WINDOW);
  const server = new Server({ 'grpc.max_receive_message_length': 64 * MiB, 'grpc.max_send_message_length': 64 * MiB });
  const payload = randomBytes(CHUNK);
  server.addService(DataServiceService, {
    uploadChunks(call: ServerDuplexStream<UploadChunksRequest, UploadChunksResponse>) {
      let queue = Promise.resolve();
      call.on('data', (req: UploadChunksRequest) => {
        call.pause();
        queue = queue.then(async () => {
          await sleep(storeMs);
          call.write({ digest: req.digest, created: true, storeBusyMs: 0 });
          call.resume();
        });
      });
      call.on('end', () => void queue.then(() => call.end()));
    },
    downloadChunks(call: ServerWritableStream<DownloadChunksRequest, DownloadChunksResponse>) {
      void (async () => {
        for (let i = 0; i < call.request.digests.length / 32; i++) {
          if (!call.write({ digest: call.request.digests.subarray(i * 32, i * 32 + 32), data: payload })) await new Promise((r) => call.once('drain', r));
        }
        call.end();
      })();
    },
  });
  const creds = ServerCredentials.createSsl(null, [{ private_key: readFileSync(join(dir, 'key.pem')), cert_chain: readFileSync(join(dir, 'cert.pem')) }], false);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? rej(e) : res(p))));
  process.send!({ port });
  process.on('disconnect', () => process.exit(0));
  // The parent asks for this process's CPU time after each case.
  process.on('message', (m) => {
    if (m !== 'cpu') return;
    const c = process.cpuUsage();
    process.send!({ cpu: (c.user + c.system) / 1e6 });
  });
}

interface Case {
  name: string;
  kind: 'upload' | 'download';
  /** Upload streams used at once, the chunks dealt out among them (default 1). */
  streams?: number;
  serverWindow: boolean;
  clientWindow: boolean;
  /** Download: ms the client spends on each chunk before taking the next (the agent's verify + write). */
  consumeMs?: number;
}

/** MiB/s, and the CPU seconds each side spent per GiB moved (the server's includes its start). */
async function runCase(dir: string, c: Case, chunks: number, storeMs: number): Promise<{ mibps: number; clientCpuPerGiB: number; serverCpuPerGiB: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', dir, c.serverWindow ? '1' : '0', String(storeMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  try {
    const { port } = await new Promise<{ port: number }>((res) => child.once('message', (m: { port: number }) => res(m)));
    const client = new DataServiceClient(`127.0.0.1:${port}`, credentials.createSsl(readFileSync(join(dir, 'cert.pem'))), {
      'grpc.ssl_target_name_override': 'localhost',
      'grpc.default_authority': 'localhost',
      'grpc.max_receive_message_length': 64 * MiB,
      'grpc.max_send_message_length': 64 * MiB,
      ...(c.clientWindow ? { 'grpc-node.flow_control_window': WINDOW } : {}),
    });
    const data = randomBytes(CHUNK);
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    if (c.kind === 'upload') {
      const streams = c.streams ?? 1;
      await Promise.all(
        Array.from({ length: streams }, async (_, k) => {
          const mine = Array.from({ length: chunks }, (_, i) => i).filter((i) => i % streams === k);
          const call = client.uploadChunks();
          let acked = 0;
          const done = new Promise<void>((res, rej) => {
            call.on('data', () => ++acked === mine.length && res());
            call.on('error', rej);
          });
          for (const i of mine) {
            const digest = Buffer.alloc(32);
            digest.writeUInt32BE(i);
            if (!call.write({ jobId: 'probe', digest, data, plaintextLength: CHUNK })) await new Promise((r) => call.once('drain', r));
          }
          await done;
          call.end();
        }),
      );
    } else {
      const call = client.downloadChunks({ jobId: 'probe', digests: Buffer.alloc(32 * chunks) });
      let got = 0;
      for await (const m of call as AsyncIterable<DownloadChunksResponse>) {
        if (m.data.length !== CHUNK) throw new Error('short chunk');
        if (c.consumeMs) await sleep(c.consumeMs);
        got++;
      }
      if (got !== chunks) throw new Error(`got ${got} of ${chunks}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    child.send('cpu');
    const serverCpu = await new Promise<number>((res) => child.once('message', (m: { cpu: number }) => res(m.cpu)));
    client.close();
    const gib = (chunks * CHUNK) / (1024 * MiB);
    return { mibps: (chunks * CHUNK) / MiB / seconds, clientCpuPerGiB: (cpu.user + cpu.system) / 1e6 / gib, serverCpuPerGiB: serverCpu / gib };
  } finally {
    child.kill();
  }
}

function show(r: { mibps: number; clientCpuPerGiB: number; serverCpuPerGiB: number }): string {
  return `${r.mibps.toFixed(0).padStart(6)} MiB/s, CPU per GiB: client ${r.clientCpuPerGiB.toFixed(2)} s, server ${r.serverCpuPerGiB.toFixed(2)} s`;
}

async function main(): Promise<void> {
  const chunks = Number(process.argv[2] ?? 64);
  const storeMs = Number(process.argv[3] ?? 25);
  const dir = mkdtempSync(join(tmpdir(), 'bh-probe-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost'], { stdio: 'ignore' });
    const cases: Case[] = [
      { name: 'upload, windows as today (64 KiB)', kind: 'upload', serverWindow: false, clientWindow: false },
      { name: `upload, hub receive window ${WINDOW / MiB} MiB`, kind: 'upload', serverWindow: true, clientWindow: false },
      { name: 'download, windows as today (64 KiB)', kind: 'download', serverWindow: false, clientWindow: false, consumeMs: 5 },
      { name: `download, agent flow_control_window ${WINDOW / MiB} MiB`, kind: 'download', serverWindow: false, clientWindow: true, consumeMs: 5 },
    ];
    console.log(`${chunks} × 4 MiB over mTLS on loopback; the hub side stores each upload in ${storeMs} ms; the agent takes 5 ms per downloaded chunk`);
    for (const c of cases) console.log(`${c.name.padEnd(48)} ${show(await runCase(dir, c, chunks, storeMs))}`);
    const more: Case[] = [
      { name: 'upload, 2 streams, windows as today', kind: 'upload', serverWindow: false, clientWindow: false, streams: 2 },
      { name: `upload, 2 streams, hub window ${WINDOW / MiB} MiB`, kind: 'upload', serverWindow: true, clientWindow: false, streams: 2 },
    ];
    for (const c of [...cases.slice(0, 2), ...more]) console.log(`${(c.name + ', store 0 ms').padEnd(48)} ${show(await runCase(dir, c, chunks, 0))}`);
    for (const c of more) console.log(`${(c.name + `, store ${storeMs} ms`).padEnd(48)} ${show(await runCase(dir, c, chunks, storeMs))}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--serve') await serve(process.argv[3]!, process.argv[4] === '1', Number(process.argv[5]));
else await main();
