import { found, route } from './route.js';
import { Agent, AgentList, IdParams } from './schemas.js';

export const agentsRoutes = [
  route({
    method: 'GET',
    url: '/api/v1/agents',
    access: 'viewer',
    summary: 'List enrolled agents with their presence and running job count.',
    status: 200,
    response: AgentList,
    handler: async ({ deps }) => ({ items: await deps.read.listAgents() }),
  }),
  route({
    method: 'GET',
    url: '/api/v1/agents/:id',
    access: 'viewer',
    summary: 'One agent.',
    params: IdParams,
    status: 200,
    response: Agent,
    handler: async ({ deps, params }) => found('agent', params.id, await deps.read.getAgent(params.id)),
  }),
];
