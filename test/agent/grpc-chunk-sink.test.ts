/**
 * The gRPC sink's bound on chunks sent and not yet stored by the hub (MAX_UNACKED_CHUNKS). The
 * upload stream here is a stand-in, a mock: through a real hub, HTTP/2 flow control holds the
 * agent back a few chunks before this bound, so the bound cannot be made to bite over the real
 * transport. The real streams are covered end to end (test/integration/backup-restore.test.ts).
 */
import { describe, expect, it } from 'vitest';
import type { DataClient } from '../../agent/data-client.js';
import { GrpcChunkSink, MAX_UNACKED_CHUNKS } from '../../agent/jobs/grpc-chunk-sink.js';

/** One upload stream whose chunks are on the wire at once and stored only when the test says. */
function standInStream() {
  const sent: { digest: string; ack: () => void }[] = [];
  const stream = {
    get pending() {
      return sent.length;
    },
    send(digest: Buffer, _zstd: Buffer, _len: number, _headroom: number, onWritten?: () => void): Promise<boolean> {
      onWritten?.();
      return new Promise((resolve) => sent.push({ digest: digest.toString('hex'), ack: () => resolve(true) }));
    },
    close: async () => {},
    cancel: () => {},
  };
  const client = { openUploads: async () => [stream] } as unknown as DataClient;
  return { client, sent };
}

const tick = () => new Promise((r) => setTimeout(r, 10));
const chunk = (i: number) => ({ digest: i.toString(16).padStart(64, '0'), zstd: Buffer.alloc(8), plaintextLength: 8 });

describe('GrpcChunkSink', () => {
  it(`sends at most ${MAX_UNACKED_CHUNKS} chunks the hub has not stored, releasing each frame once sent`, async () => {
    const { client, sent } = standInStream();
    const sink = new GrpcChunkSink(client, 'job-1');
    const stop = new AbortController();
    let released = 0;
    const uploads = Array.from({ length: MAX_UNACKED_CHUNKS + 3 }, (_, i) => sink.upload(chunk(i), stop.signal, () => released++));
    await tick();
    expect(sent).toHaveLength(MAX_UNACKED_CHUNKS);
    expect(released).toBe(MAX_UNACKED_CHUNKS);

    // Each chunk stored makes room for exactly one more, in the order they came.
    sent[0]!.ack();
    sent[1]!.ack();
    await tick();
    expect(sent).toHaveLength(MAX_UNACKED_CHUNKS + 2);
    expect(sent.at(-1)!.digest).toBe(chunk(MAX_UNACKED_CHUNKS + 1).digest);

    // A cancelled job's waiting chunk is never sent.
    stop.abort();
    await expect(uploads.at(-1)).rejects.toThrow('the upload was cancelled');
    for (const s of sent) s.ack();
    await Promise.all(uploads.slice(0, -1));
    expect(sent).toHaveLength(MAX_UNACKED_CHUNKS + 2);
    expect(released).toBe(MAX_UNACKED_CHUNKS + 2);
    await sink.close();
  });
});
