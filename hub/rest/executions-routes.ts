import { actionRoute, found, route } from './route.js';
import { ExecutionDetail, ExecutionPage, IdParams, ListExecutionsQuery } from './schemas.js';

export const executionsRoutes = [
  route({
    method: 'GET',
    url: '/api/v1/executions',
    access: 'viewer',
    summary: 'List executions, newest first. Filter by flow_id and status; page with limit and offset.',
    query: ListExecutionsQuery,
    status: 200,
    response: ExecutionPage,
    handler: async ({ deps, query }) =>
      deps.read.listExecutions({ flowId: query.flow_id, status: query.status, limit: query.limit, offset: query.offset }),
  }),
  route({
    method: 'GET',
    url: '/api/v1/executions/:id',
    access: 'viewer',
    summary: 'One execution with its jobs.',
    params: IdParams,
    status: 200,
    response: ExecutionDetail,
    handler: async ({ deps, params }) => found('execution', params.id, await deps.read.getExecution(params.id)),
  }),
  actionRoute({
    url: '/api/v1/executions/:id/cancel',
    access: 'operator',
    summary: 'Cancel a running execution: its live jobs are cancelled. Answers at once (202); the execution ends when its jobs do.',
    status: 202,
    response: ExecutionDetail,
    what: 'execution',
    act: (deps, id) => deps.lifecycle.cancelExecution(id),
    read: (deps, id) => deps.read.getExecution(id),
  }),
];
