/**
 * The restore writer thread: verifies, hashes and writes a restore's chunks in disk order
 * (answerRestoreWriteTask), so the agent's event loop only receives them from the hub.
 */
import { serveTasks } from '../../shared/workers/worker-protocol.js';
import { answerRestoreWriteTask } from './restore-writer-protocol.js';

serveTasks('restore-writer-worker', answerRestoreWriteTask);
