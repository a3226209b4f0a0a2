import { AgentSchema } from './agent.js';
import { BackupSchema } from './backup.js';
import { JobDiskIndexSchema } from './job-disk-index.js';
import { JobSchema } from './job.js';
import { ApiTokenSchema } from './api-token.js';
import { ExecutionSchema } from './execution.js';
import { FlowSchema } from './flow.js';
import { TargetSchema } from './target.js';
import { CaMaterialSchema } from './ca-material.js';
import { JoinTokenSchema } from './join-token.js';

export const entities = [AgentSchema, JoinTokenSchema, CaMaterialSchema, JobSchema, BackupSchema, JobDiskIndexSchema, ApiTokenSchema, TargetSchema, FlowSchema, ExecutionSchema];
