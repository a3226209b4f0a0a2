import { AgentSchema } from './agent.js';
import { BackupSchema } from './backup.js';
import { JobDiskIndexSchema } from './job-disk-index.js';
import { JobSchema } from './job.js';
import { CaMaterialSchema } from './ca-material.js';
import { JoinTokenSchema } from './join-token.js';

export const entities = [AgentSchema, JoinTokenSchema, CaMaterialSchema, JobSchema, BackupSchema, JobDiskIndexSchema];
