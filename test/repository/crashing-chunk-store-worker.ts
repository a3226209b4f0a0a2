/**
 * The chunk store worker, except that a task for a digest starting "dead" makes the thread exit
 * with code 9 before it stores or reads anything: for the crash tests.
 */
import { answerChunkStoreTask, type ChunkStoreTask } from '../../hub/repository/chunk-store-worker-protocol.js';
import { serveTasks } from '../../shared/workers/worker-protocol.js';

serveTasks('crashing-chunk-store-worker', (task: ChunkStoreTask) => {
  if (task.digest.startsWith('dead')) process.exit(9);
  return answerChunkStoreTask(task);
});
