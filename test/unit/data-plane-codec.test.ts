/**
 * The bulk codec of the chunk messages: the bytes on the wire are the generated protobuf's, and
 * the in-place encoding writes its header into the headroom before the frame instead of copying.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeUploadChunksRequest, encodeUploadChunksRequest, encodeUploadChunksRequestInPlace } from '../../shared/data-plane-codec.js';
import { UploadChunksRequest } from '../../shared/gen/backhaul/v1/data.js';

const HEADROOM = 256;

/** A frame preceded by `headroom` bytes of the same buffer, as the pipeline lays them out. */
function frameWithHeadroom(bytes: Buffer, headroom: number): Buffer {
  const sab = new SharedArrayBuffer(headroom + bytes.length);
  const frame = Buffer.from(sab, headroom, bytes.length);
  frame.set(bytes);
  return frame;
}

describe('UploadChunksRequest codec', () => {
  const base = { jobId: '3f0c8a52-6a55-4e2b-9d8e-8f2d2f7c1a10', digest: randomBytes(32), plaintextLength: 4 * 1024 * 1024 };

  it('encodes in place: the same bytes the generated encoder writes, in the frame’s own buffer', () => {
    const bytes = randomBytes(1 << 20);
    const data = frameWithHeadroom(bytes, HEADROOM);
    const m = { ...base, data };

    const out = encodeUploadChunksRequestInPlace(m, HEADROOM);

    expect(out.buffer).toBe(data.buffer); // no copy of the frame
    expect(out.byteOffset + out.length).toBe(data.byteOffset + data.length);
    expect(out.subarray(out.length - bytes.length).equals(bytes)).toBe(true);
    const decoded = decodeUploadChunksRequest(out);
    expect(decoded.jobId).toBe(m.jobId);
    expect(decoded.digest.equals(m.digest)).toBe(true);
    expect(decoded.plaintextLength).toBe(m.plaintextLength);
    expect(decoded.data.equals(bytes)).toBe(true);
    // And the generated decoder reads it as the same message.
    const generated = UploadChunksRequest.decode(out);
    expect(Buffer.from(generated.data).equals(bytes)).toBe(true);
    expect(generated.jobId).toBe(m.jobId);
    // Byte for byte what the copying encoder produces.
    expect(out.equals(encodeUploadChunksRequest(m))).toBe(true);
  });

  it('falls back to a copy when the headroom is too small, and never writes outside it', () => {
    const bytes = randomBytes(4096);
    const data = frameWithHeadroom(bytes, 8);
    const before = Buffer.from(data.buffer, 0, 8).toString('hex');

    const out = encodeUploadChunksRequestInPlace({ ...base, data }, 8);

    expect(out.buffer).not.toBe(data.buffer);
    expect(Buffer.from(data.buffer, 0, 8).toString('hex')).toBe(before);
    const decoded = decodeUploadChunksRequest(out);
    expect(decoded.data.equals(bytes)).toBe(true);
    expect(decoded.jobId).toBe(base.jobId);
  });
});
