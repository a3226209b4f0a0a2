/**
 * A chunk store worker thread: checks and durably writes uploaded chunks (storeUploadSync), and
 * reads and verifies chunks for restores and verify (readChunkSync), each with synchronous calls,
 * so the hub's busy main thread makes one round trip per chunk instead of one per fs call. A task
 * that fails is answered, and the worker carries on.
 */
import { serveTasks } from '../../shared/workers/worker-protocol.js';
import { answerChunkStoreTask } from './chunk-store-worker-protocol.js';

serveTasks('chunk-store-worker', answerChunkStoreTask);
