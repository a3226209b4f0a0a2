import { found, route } from './route.js';
import { CreateTargetRequest, IdParams, ListTargetsQuery, Target, TargetList } from './schemas.js';

export const targetsRoutes = [
  route({
    method: 'GET',
    url: '/api/v1/targets',
    access: 'viewer',
    summary: "List targets: the VMs and images agents report, and those added through the API. Filter by agent_id.",
    query: ListTargetsQuery,
    status: 200,
    response: TargetList,
    handler: async ({ deps, query }) => ({ items: await deps.read.listTargets({ agentId: query.agent_id }) }),
  }),
  route({
    method: 'GET',
    url: '/api/v1/targets/:id',
    access: 'viewer',
    summary: 'One target.',
    params: IdParams,
    status: 200,
    response: Target,
    handler: async ({ deps, params }) => found('target', params.id, await deps.read.getTarget(params.id)),
  }),
  route({
    method: 'POST',
    url: '/api/v1/targets',
    access: 'operator',
    summary: 'Add a target that its agent does not report itself.',
    body: CreateTargetRequest,
    status: 201,
    response: Target,
    errors: ['ALREADY_EXISTS'],
    handler: async ({ deps, body }) => {
      const id = await deps.lifecycle.addTarget({
        agentId: body.agent_id,
        ref: body.ref,
        name: body.name,
        driver: body.driver,
        disks: body.disks.map((d) => ({ name: d.name, path: d.path, sizeBytes: d.size_bytes })),
        options: body.options,
      });
      return found('target', id, await deps.read.getTarget(id));
    },
  }),
];
