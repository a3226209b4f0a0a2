import { AgentSchema } from './agent.js';
import { CaMaterialSchema } from './ca-material.js';
import { JoinTokenSchema } from './join-token.js';

export const entities = [AgentSchema, JoinTokenSchema, CaMaterialSchema];
