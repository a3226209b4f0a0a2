import { EntitySchema } from '@mikro-orm/core';

/** One disk of a restore point: its index in the repository and its change-tracking bitmap. */
export interface BackupDisk {
  name: string;
  sizeBytes: number;
  /** Path of the index file relative to the repository root. */
  indexPath: string;
  chunkCount: number;
  zeroChunks: number;
  /** The bitmap that records changes after this backup: the base of the next incremental. */
  bitmap: string | null;
  fullReadReason: string | null;
}

/**
 * A restore point. The row exists only once the hub has committed the backup: every chunk its
 * indexes name is in the repository. Each backup is logically full.
 */
export class Backup {
  id!: string;
  jobId!: string;
  agentId!: string;
  targetId!: string;
  parentBackupId: string | null = null;
  disks!: BackupDisk[];
  bytesTotal!: number;
  createdAt!: Date;
}

export const BackupSchema = new EntitySchema<Backup>({
  class: Backup,
  tableName: 'backups',
  properties: {
    id: { type: 'uuid', primary: true },
    jobId: { type: 'uuid', unique: true },
    agentId: { type: 'uuid' },
    targetId: { type: 'text' },
    parentBackupId: { type: 'uuid', nullable: true },
    disks: { type: 'json' },
    bytesTotal: { type: 'double' },
    createdAt: { type: 'datetime' },
  },
});
