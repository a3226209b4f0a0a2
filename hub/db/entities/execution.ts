import { EntitySchema } from '@mikro-orm/core';
import type { ExecutionStatusName, ExecutionTrigger } from '../../lifecycle/execution-state.js';

/** One run of a flow. Its counters are derived from its job rows whenever a job ends. */
export class Execution {
  id!: string;
  flowId: string | null = null;
  flowName!: string;
  trigger!: ExecutionTrigger;
  status!: ExecutionStatusName;
  jobsTotal!: number;
  jobsSucceeded = 0;
  jobsFailed = 0;
  jobsCancelled = 0;
  bytesDone = 0;
  cancelRequestedAt: Date | null = null;
  createdAt!: Date;
  completedAt: Date | null = null;
}

export const ExecutionSchema = new EntitySchema<Execution>({
  class: Execution,
  tableName: 'executions',
  properties: {
    id: { type: 'uuid', primary: true },
    flowId: { type: 'uuid', nullable: true },
    flowName: { type: 'text' },
    trigger: { type: 'text' },
    status: { type: 'text' },
    jobsTotal: { type: 'integer' },
    jobsSucceeded: { type: 'integer', default: 0 },
    jobsFailed: { type: 'integer', default: 0 },
    jobsCancelled: { type: 'integer', default: 0 },
    bytesDone: { type: 'double', default: 0 },
    cancelRequestedAt: { type: 'datetime', nullable: true },
    createdAt: { type: 'datetime' },
    completedAt: { type: 'datetime', nullable: true },
  },
});
