/**
 * The CPU that the work the design requires costs per GiB on this machine, each part measured on
 * its own with the project's code: a lower bound on what any backup of that many bytes can take.
 *
 * - The transport: block data on gRPC streams over mTLS (DESIGN §2, issue 3). The agent's real
 *   DataClient and GrpcChunkSink send 4 MiB chunks, 8 in flight as the pipeline keeps them, to a
 *   process with the hub's gRPC settings that acknowledges each chunk and stores nothing
 *   (transport-floor-server.ts). Both processes' CPU is counted.
 * - SHA-256: the agent names each chunk by it and the hub checks it on receipt, one pass each.
 * - zstd: the agent compresses each chunk (at the pipeline's level) and the hub decompresses it
 *   to check it (issue 3).
 *
 * What the bench adds from its own runs: qemu-storage-daemon's CPU per GiB it served.
 */
import { fork } from 'node:child_process';
import { createHash, randomFillSync, randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { DataClient } from '../../../agent/data-client.js';
import { GrpcChunkSink } from '../../../agent/jobs/grpc-chunk-sink.js';
import { DEFAULT_COMPRESSION_LEVEL, FRAME_HEADROOM } from '../../../agent/pipeline/backup-pipeline.js';
import { loadHubConfig } from '../../../hub/config.js';
import { CertificateAuthority } from '../../../hub/pki/ca.js';
import { zstdCompress, zstdCompressBound, zstdDecompressInto } from '../../../shared/chunk/zstd.js';
import { HUB_TLS_NAME } from '../../../shared/grpc-options.js';
import type { FloorServerSetup } from './transport-floor-server.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CHUNK = 4 * MiB;
/** The pipeline's chunks in flight (maxChunksInFlight's default). */
const LANES = 8;

export interface CpuFloor {
  /** CPU seconds per GiB moved, on each side, and the rate it moved at. */
  transport: { agentPerGiB: number; hubPerGiB: number; mibps: number; bytes: number };
  /** CPU seconds per GiB of one SHA-256 pass (Node crypto, 4 MiB pieces, in memory). */
  sha256PerGiB: number;
  /** CPU seconds per GiB of plaintext of zstd compression and of decompression, random data. */
  zstdPerGiB: { compress: number; decompress: number };
}

const cpuSeconds = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

export async function measureCpuFloor(bytes = 512 * MiB): Promise<CpuFloor> {
  const chunks = Math.ceil(bytes / CHUNK);
  const payload = randomFillSync(Buffer.allocUnsafe(CHUNK));
  return { transport: await measureTransport(chunks), sha256PerGiB: measureSha256(payload, chunks), zstdPerGiB: measureZstd(payload, chunks) };
}

/** CPU seconds of `work` per GiB when it handles `chunks` chunks. */
function perGiB(chunks: number, work: () => void): number {
  const c0 = cpuSeconds();
  work();
  return ((cpuSeconds() - c0) * GiB) / (chunks * CHUNK);
}

function measureSha256(payload: Buffer, chunks: number): number {
  return perGiB(chunks, () => {
    for (let i = 0; i < chunks; i++) createHash('sha256').update(payload).digest();
  });
}

function measureZstd(payload: Buffer, chunks: number): CpuFloor['zstdPerGiB'] {
  const scratch = Buffer.allocUnsafe(zstdCompressBound(CHUNK));
  const frame = Buffer.from(zstdCompress(payload, DEFAULT_COMPRESSION_LEVEL, scratch));
  const out = Buffer.allocUnsafe(CHUNK);
  return {
    compress: perGiB(chunks, () => {
      for (let i = 0; i < chunks; i++) zstdCompress(payload, DEFAULT_COMPRESSION_LEVEL, scratch);
    }),
    decompress: perGiB(chunks, () => {
      for (let i = 0; i < chunks; i++) zstdDecompressInto(frame, out);
    }),
  };
}

async function measureTransport(chunks: number): Promise<CpuFloor['transport']> {
  const { ca } = await CertificateAuthority.create();
  const hubCert = await ca.issueServerCert([HUB_TLS_NAME]);
  // Any certificate of the CA will do for the agent's side: this server checks none.
  const agentCert = await ca.issueServerCert(['bench-agent']);
  const child = fork(fileURLToPath(new URL('./transport-floor-server.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const next = <T>() => new Promise<T>((resolve, reject) => {
    child.once('message', (m: T) => resolve(m));
    child.once('exit', (code) => reject(new Error(`the transport floor server exited (${code})`)));
  });
  const serverCpu = async () => {
    const answer = next<{ cpuSeconds: number }>();
    child.send('cpu');
    return (await answer).cpuSeconds;
  };
  try {
    const ready = next<{ port: number }>();
    const setup: FloorServerSetup = { caPem: ca.certPem, certChainPem: hubCert.certChainPem, keyPem: hubCert.keyPem, windowBytes: loadHubConfig(undefined, {}).grpcWindowBytes };
    child.send(setup);
    const { port } = await ready;
    const data = new DataClient(`127.0.0.1:${port}`, { caPem: ca.certPem, keyPem: agentCert.keyPem, certPem: agentCert.certChainPem });
    try {
      const lanes = Array.from({ length: LANES }, () => {
        const frame = Buffer.allocUnsafe(FRAME_HEADROOM + CHUNK);
        randomFillSync(frame);
        return frame;
      });
      const send = async (count: number) => {
        const sink = new GrpcChunkSink(data, randomUUID());
        const stop = new AbortController();
        let n = 0;
        await Promise.all(
          lanes.map(async (frame) => {
            while (n < count) {
              const digest = createHash('sha256').update(`${n++}`).digest('hex');
              await sink.upload({ digest, zstd: frame.subarray(FRAME_HEADROOM), plaintextLength: CHUNK, headroom: FRAME_HEADROOM }, stop.signal);
            }
          }),
        );
        await sink.close();
      };
      // The connection, the TLS handshake and the compiled code are ready before the count starts.
      await send(LANES);
      const [agent0, hub0] = [cpuSeconds(), await serverCpu()];
      const t0 = performance.now();
      await send(chunks);
      const seconds = (performance.now() - t0) / 1000;
      const [agent, hub] = [cpuSeconds() - agent0, (await serverCpu()) - hub0];
      const moved = chunks * CHUNK;
      return { agentPerGiB: (agent * GiB) / moved, hubPerGiB: (hub * GiB) / moved, mibps: moved / MiB / seconds, bytes: moved };
    } finally {
      data.close();
    }
  } finally {
    child.kill();
  }
}
