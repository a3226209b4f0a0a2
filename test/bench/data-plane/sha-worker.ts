/**
 * A worker thread of the read + SHA-256 ceiling (sha-limit.ts): reads [start, end) of a file in
 * 4 MiB pieces, one after the other, and hashes each piece on its own as the pipeline hashes
 * chunks. Posts { bytes } when done.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';

const { path, start, end, piece } = workerData as { path: string; start: number; end: number; piece: number };

const fh = await open(path, 'r');
let bytes = 0;
try {
  const buf = Buffer.allocUnsafe(piece);
  for (let at = start; at < end; at += piece) {
    const n = Math.min(piece, end - at);
    let got = 0;
    while (got < n) {
      const { bytesRead } = await fh.read(buf, got, n - got, at + got);
      if (bytesRead === 0) throw new Error(`short read at ${at + got}`);
      got += bytesRead;
    }
    createHash('sha256').update(buf.subarray(0, n)).digest();
    bytes += n;
  }
} finally {
  await fh.close();
}
parentPort!.postMessage({ bytes });
