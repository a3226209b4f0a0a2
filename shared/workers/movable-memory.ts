/**
 * Whether a view's memory can be moved to a worker thread (in a postMessage transfer list) instead
 * of copied. Moving detaches the whole ArrayBuffer on the sending side, so it must hold nothing
 * else that matters: not Node's shared pool for small Buffers, and at most `slackBytes` outside
 * the view (e.g. the other fields of the gRPC message grpc-js received into it).
 */
export function ownsItsMemory(view: Uint8Array, slackBytes: number): boolean {
  const ab = view.buffer;
  return ab instanceof ArrayBuffer && ab.byteLength > Buffer.poolSize && ab.byteLength - view.byteLength <= slackBytes;
}
