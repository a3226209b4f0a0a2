import { actionRoute, found, route } from './route.js';
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
  setAgentEnabled(false),
  setAgentEnabled(true),
];

function setAgentEnabled(enabled: boolean) {
  return actionRoute({
    url: `/api/v1/agents/:id/${enabled ? 'enable' : 'disable'}`,
    access: 'operator',
    summary: enabled ? 'Enable an agent: it may connect and take jobs again.' : 'Disable an agent: its stream is closed, its reconnects are refused, and it gets no jobs.',
    status: 200,
    response: Agent,
    what: 'agent',
    act: (deps, id) => deps.lifecycle.setAgentEnabled(id, enabled),
    read: (deps, id) => deps.read.getAgent(id),
  });
}
