/**
 * The chunk store worker, except that a task for a digest starting "dead" makes the thread exit
 * with code 9 before it stores anything: for the crash tests.
 */
import { answerStoreChunkTask } from '../../hub/repository/chunk-store-worker-protocol.js';
import { serveTasks } from '../../shared/workers/worker-protocol.js';

serveTasks('crashing-chunk-store-worker', (task: Parameters<typeof answerStoreChunkTask>[0]) => {
  if (task.digest.startsWith('dead')) process.exit(9);
  return answerStoreChunkTask(task);
});
