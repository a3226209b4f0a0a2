/**
 * A chunk worker that dies, for the crash tests: a task whose first chunk is 1 byte long makes it
 * exit with code 7; any other task throws an uncaught exception, which kills the thread.
 */
import { parentPort } from 'node:worker_threads';
import type { ChunkTask } from '../../agent/pipeline/chunk-worker-protocol.js';
import type { WorkerRequestEnvelope } from '../../shared/workers/worker-protocol.js';

parentPort!.on('message', (msg: WorkerRequestEnvelope<ChunkTask>) => {
  if (msg.task.chunks[0]?.length === 1) process.exit(7);
  throw new Error(`simulated worker crash in ${msg.task.op}`);
});
