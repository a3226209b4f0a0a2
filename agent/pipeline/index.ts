/** The agent's block pipeline: one backup of one target's disks, chunk by chunk, into a ChunkSink. */
export { startBackup, runBackup, type BackupPipelineOptions, type BackupPipelineResult, type BackupRun, type DiskBackupResult, type DiskInput } from './backup-pipeline.js';
export type { ChunkSink, ChunkUpload } from './chunk-sink.js';
export { ChunkWorkerPool, type ChunkWorkerPoolOptions } from './chunk-workers.js';
export { planChunks, type ChunkAction, type PlanInput } from './chunk-plan.js';
export { PipelineError, isPipelineError, type PipelineErrorCode, type PipelineErrorDetails } from './pipeline-error.js';
export type { PipelineProgress, StageBusy, TransferCounters } from './transfer-progress.js';
export { BusyMeter } from '../../shared/busy-meter.js';
