import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { DataServiceService, DownloadChunksResponse, UploadChunksRequest, type DataServiceClient } from './gen/backhaul/v1/data.js';

/**
 * The wire codec of the two messages that carry chunk bytes (UploadChunksRequest,
 * DownloadChunksResponse), used by both ends in place of ts-proto's. The bytes on the wire are
 * the same protobuf; only the copies differ. ts-proto's encode grows a BinaryWriter by doubling
 * (a 4 MiB chunk passes through ~16 MiB of zero-filled buffers, then two more copies), and its
 * decode copies every bytes field. Measured in the data-plane bench, that churn made the garbage
 * collector the largest CPU consumer of both processes. Here encode allocates the message once,
 * and decode returns the bulk field as a view into the received message (grpc-js hands each
 * message over in a buffer of its own, so the view pins nothing else).
 */

const EMPTY = Buffer.alloc(0);
const DATA_FIELD = 3; // UploadChunksRequest.data
const DOWNLOAD_DATA_FIELD = 2; // DownloadChunksResponse.data

/** The small fields through ts-proto, then the bulk field's tag and length. */
function bulkPrefix(head: BinaryWriter, field: number, bulkLength: number): Uint8Array {
  return head.uint32((field << 3) | WireType.LengthDelimited).uint32(bulkLength).finish();
}

/** The prefix, then the bulk bytes, in one allocation. */
function joined(prefix: Uint8Array, bulk: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(prefix.length + bulk.length);
  out.set(prefix, 0);
  out.set(bulk, prefix.length);
  return out;
}

function encodeWithBulk(head: BinaryWriter, field: number, bulk: Uint8Array): Buffer {
  return joined(bulkPrefix(head, field, bulk.length), bulk);
}

function view(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeUploadChunksRequest(m: UploadChunksRequest): Buffer {
  return encodeWithBulk(UploadChunksRequest.encode({ ...m, data: EMPTY }), DATA_FIELD, m.data);
}

/**
 * The small fields and the bulk field's tag and length written into the `headroom` bytes just
 * before `bulk` in its buffer (which the caller lets us overwrite), so the megabytes are not
 * copied into a message of their own. Without room, encoded with a copy as usual.
 */
function encodeInPlace(head: BinaryWriter, field: number, bulk: Uint8Array, headroom: number): Buffer {
  const prefix = bulkPrefix(head, field, bulk.length);
  if (prefix.length > headroom || prefix.length > bulk.byteOffset) return joined(prefix, bulk);
  const out = Buffer.from(bulk.buffer, bulk.byteOffset - prefix.length, prefix.length + bulk.length);
  out.set(prefix, 0);
  return out;
}

/** UploadChunksRequest encoded in place before its data (see encodeInPlace). */
export function encodeUploadChunksRequestInPlace(m: UploadChunksRequest, headroom: number): Buffer {
  return encodeInPlace(UploadChunksRequest.encode({ ...m, data: EMPTY }), DATA_FIELD, m.data, headroom);
}

/** DownloadChunksResponse encoded in place before its data (see encodeInPlace). */
export function encodeDownloadChunksResponseInPlace(m: DownloadChunksResponse, headroom: number): Buffer {
  return encodeInPlace(DownloadChunksResponse.encode({ ...m, data: EMPTY }), DOWNLOAD_DATA_FIELD, m.data, headroom);
}

/** The client's serializer: a Buffer is a request encoded already (encodeUploadChunksRequestInPlace). */
function serializeUploadChunksRequest(m: UploadChunksRequest | Buffer): Buffer {
  return Buffer.isBuffer(m) ? m : encodeUploadChunksRequest(m);
}

/** The hub's serializer: a Buffer is a response encoded already (encodeDownloadChunksResponseInPlace). */
function serializeDownloadChunksResponse(m: DownloadChunksResponse | Buffer): Buffer {
  return Buffer.isBuffer(m) ? m : encodeDownloadChunksResponse(m);
}

export function decodeUploadChunksRequest(buf: Buffer): UploadChunksRequest {
  const m: UploadChunksRequest = { jobId: '', digest: EMPTY, data: EMPTY, plaintextLength: 0 };
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [field, type] = r.tag();
    if (field === 1 && type === WireType.LengthDelimited) m.jobId = r.string();
    else if (field === 2 && type === WireType.LengthDelimited) m.digest = view(r.bytes());
    else if (field === DATA_FIELD && type === WireType.LengthDelimited) m.data = view(r.bytes());
    else if (field === 4 && type === WireType.Varint) m.plaintextLength = r.uint32();
    else r.skip(type, field);
  }
  return m;
}

export function encodeDownloadChunksResponse(m: DownloadChunksResponse): Buffer {
  return encodeWithBulk(DownloadChunksResponse.encode({ ...m, data: EMPTY }), DOWNLOAD_DATA_FIELD, m.data);
}

export function decodeDownloadChunksResponse(buf: Buffer): DownloadChunksResponse {
  const m: DownloadChunksResponse = { digest: EMPTY, data: EMPTY };
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [field, type] = r.tag();
    if (field === 1 && type === WireType.LengthDelimited) m.digest = view(r.bytes());
    else if (field === DOWNLOAD_DATA_FIELD && type === WireType.LengthDelimited) m.data = view(r.bytes());
    else r.skip(type, field);
  }
  return m;
}

/** DataService with the bulk codec: what the hub serves and the agent calls. */
export const dataServiceWithBulkCodec = {
  ...DataServiceService,
  uploadChunks: { ...DataServiceService.uploadChunks, requestSerialize: serializeUploadChunksRequest, requestDeserialize: decodeUploadChunksRequest },
  downloadChunks: { ...DataServiceService.downloadChunks, responseSerialize: serializeDownloadChunksResponse, responseDeserialize: decodeDownloadChunksResponse },
} as const;

/** The generated client's shape, built on the bulk codec. */
export const BulkDataServiceClient = makeGenericClientConstructor(dataServiceWithBulkCodec, 'backhaul.v1.DataService') as unknown as typeof DataServiceClient;
