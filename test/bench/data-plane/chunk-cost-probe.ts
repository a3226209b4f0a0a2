/**
 * A diagnostic, not part of `npm run bench`: what one 4 MiB chunk of incompressible data costs on
 * this machine at each step of the data plane, on one thread, and how fast the hub's
 * Repository.putChunk stores such chunks one at a time (as the upload handler does today) and
 * with several in flight.
 *
 *   node dist/test/bench/data-plane/chunk-cost-probe.js [chunks=64]
 */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zstdCompress, zstdDecompress } from '../../../shared/chunk/zstd.js';
import { Repository } from '../../../hub/repository/index.js';

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;

function perChunkMs(n: number, f: (i: number) => void): number {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f(i);
  return (performance.now() - t0) / n;
}

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 64);
  const chunks = Array.from({ length: n }, () => randomFillSync(Buffer.allocUnsafe(CHUNK)));
  const digests = chunks.map((c) => createHash('sha256').update(c).digest('hex'));
  const row = (name: string, ms: number) => console.log(`${name.padEnd(52)} ${ms.toFixed(2).padStart(7)} ms/chunk ${((CHUNK / MiB / ms) * 1000).toFixed(0).padStart(6)} MiB/s`);

  console.log(`${n} chunks of 4 MiB random data, one thread`);
  row('SHA-256 (node crypto)', perChunkMs(n, (i) => createHash('sha256').update(chunks[i]!).digest()));
  const frames3: Buffer[] = [];
  row('zstd level 3 (the agent default)', perChunkMs(n, (i) => frames3.push(Buffer.from(zstdCompress(chunks[i]!, 3)))));
  row('zstd level 1', perChunkMs(n, (i) => zstdCompress(chunks[i]!, 1)));
  row('zstd level -1 (fast)', perChunkMs(n, (i) => zstdCompress(chunks[i]!, -1)));
  row('zstd decompress (hub check, restore read)', perChunkMs(n, (i) => zstdDecompress(frames3[i]!, CHUNK)));
  row('Buffer copy (one memcpy of the chunk)', perChunkMs(n, (i) => Buffer.from(chunks[i]!)));

  for (const inFlight of [1, 2, 4]) {
    const dir = await mkdtemp(join(tmpdir(), 'bh-store-probe-'));
    try {
      const repo = await Repository.create(join(dir, 'repo'));
      const t0 = performance.now();
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < n) {
            const i = next++;
            await repo.putChunk(digests[i]!, frames3[i]!, 'zstd');
          }
        }),
      );
      row(`Repository.putChunk (check + write + fsyncs), ${inFlight} in flight`, (performance.now() - t0) / n);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

await main();
