/**
 * Where the pipeline sends chunks: the hub's repository, reached through the data plane
 * (DataService.MissingChunks / UploadChunks in proto/backhaul/v1/data.proto). The pipeline only
 * knows this interface; the gRPC client implements it, and tests use an in-process repository.
 */

/** One new chunk, compressed the way FORMAT.md §3 asks: a single zstd frame with its content size. */
export interface ChunkUpload {
  /** SHA-256 of the plaintext, 64 lowercase hex digits. */
  digest: string;
  /** The zstd frame. The sink may keep it until upload() settles, and not after. */
  zstd: Buffer;
  /** Length of the plaintext the frame decodes to (1 to 4 MiB). */
  plaintextLength: number;
  /**
   * Bytes just before `zstd` in its buffer that the sink may overwrite until upload() settles,
   * e.g. to put a message header in front of the frame instead of copying the frame. 0 if absent.
   */
  headroom?: number;
}

/**
 * Calls overlap: a few missing() calls and up to the pipeline's in-flight limit of upload() calls
 * may be outstanding at once. Each gets the run's AbortSignal; a sink should give up on it.
 */
export interface ChunkSink {
  /**
   * Which of `digests` the hub lacks. The answer must be a subset of the question (any order).
   * The hub touches the ones it has (FORMAT.md §7), so "present" stays true until the commit.
   * The pipeline asks at most `maxMissingBatch` digests per call.
   */
  missing(digests: readonly string[], signal: AbortSignal): Promise<string[]>;

  /**
   * Resolves once the hub has stored the chunk durably (or found it already stored). This is
   * where backpressure comes from: a slow link or a busy hub simply makes it resolve later, and
   * the pipeline never has more than its in-flight limit of chunks waiting.
   */
  upload(chunk: ChunkUpload, signal: AbortSignal): Promise<void>;

  /**
   * Total milliseconds the hub has spent serving this sink's calls so far (storing and looking
   * up chunks), if the sink can tell. Lets progress tell a slow hub from a slow network.
   */
  hubBusyMs?(): number;
}
