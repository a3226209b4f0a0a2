import { EntitySchema } from '@mikro-orm/core';

export interface FlowSchedule {
  cron: string;
  timezone: string;
}

export interface RetentionPolicy {
  keepLast?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
}

/** A protection flow: targets backed up together, on a schedule, kept by a retention policy. */
export class Flow {
  id!: string;
  name!: string;
  description: string | null = null;
  schedule: FlowSchedule | null = null;
  retention: RetentionPolicy | null = null;
  enabled = true;
  createdAt!: Date;
  updatedAt!: Date;
  lastExecutionId: string | null = null;
  lastExecutionStatus: string | null = null;
  lastExecutionAt: Date | null = null;
  executionsTotal = 0;
  executionsSucceeded = 0;
  executionsPartial = 0;
  executionsFailed = 0;
  executionsCancelled = 0;
  bytesTotal = 0;
}

export const FlowSchema = new EntitySchema<Flow>({
  class: Flow,
  tableName: 'flows',
  properties: {
    id: { type: 'uuid', primary: true },
    name: { type: 'text', unique: true },
    description: { type: 'text', nullable: true },
    schedule: { type: 'json', nullable: true },
    retention: { type: 'json', nullable: true },
    enabled: { type: 'boolean', default: true },
    createdAt: { type: 'datetime' },
    updatedAt: { type: 'datetime' },
    lastExecutionId: { type: 'uuid', nullable: true },
    lastExecutionStatus: { type: 'text', nullable: true },
    lastExecutionAt: { type: 'datetime', nullable: true },
    executionsTotal: { type: 'integer', default: 0 },
    executionsSucceeded: { type: 'integer', default: 0 },
    executionsPartial: { type: 'integer', default: 0 },
    executionsFailed: { type: 'integer', default: 0 },
    executionsCancelled: { type: 'integer', default: 0 },
    bytesTotal: { type: 'double', default: 0 },
  },
});
