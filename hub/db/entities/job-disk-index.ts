import { EntitySchema } from '@mikro-orm/core';

/**
 * A disk index an agent sent for a running backup job. Kept in the database, not in memory,
 * so the commit survives a hub restart between PutIndex and the final report.
 */
export class JobDiskIndex {
  jobId!: string;
  diskName!: string;
  diskSize!: number;
  /** Concatenated 32-byte digests; 32 zero bytes mark an all-zero chunk. */
  digests!: Buffer;
  receivedAt!: Date;
}

export const JobDiskIndexSchema = new EntitySchema<JobDiskIndex>({
  class: JobDiskIndex,
  tableName: 'job_disk_indexes',
  properties: {
    jobId: { type: 'uuid', primary: true },
    diskName: { type: 'text', primary: true },
    diskSize: { type: 'double' },
    digests: { type: 'blob' },
    receivedAt: { type: 'datetime' },
  },
});
