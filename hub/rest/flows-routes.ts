import type { z } from 'zod';
import type { FlowInput } from '../lifecycle/flows.js';
import { actionRoute, found, route } from './route.js';
import { CreateFlowRequest, ExecutionDetail, Flow, FlowHistory, FlowHistoryQuery, FlowList, IdParams, UpdateFlowRequest } from './schemas.js';

type RetentionBody = NonNullable<z.output<typeof CreateFlowRequest>['retention']>;

const retentionInput = (r: RetentionBody | null): FlowInput['retention'] =>
  r && { keepLast: r.keep_last, keepDaily: r.keep_daily, keepWeekly: r.keep_weekly, keepMonthly: r.keep_monthly };

/** The fields a PATCH names, and only those: an absent field is left as it is, a null one cleared. */
function flowPatch(b: z.output<typeof UpdateFlowRequest>): Partial<FlowInput> {
  const patch: Partial<FlowInput> = {};
  if (b.name !== undefined) patch.name = b.name;
  if (b.description !== undefined) patch.description = b.description;
  if (b.target_ids !== undefined) patch.targetIds = b.target_ids;
  if (b.schedule !== undefined) patch.schedule = b.schedule;
  if (b.retention !== undefined) patch.retention = retentionInput(b.retention);
  if (b.enabled !== undefined) patch.enabled = b.enabled;
  return patch;
}

const setEnabled = (enabled: boolean) =>
  actionRoute({
    url: `/api/v1/flows/:id/${enabled ? 'enable' : 'disable'}`,
    access: 'operator',
    summary: enabled ? 'Enable a flow: its schedule runs it again.' : 'Disable a flow: its schedule no longer runs it, and run now is refused.',
    status: 200,
    response: Flow,
    what: 'flow',
    act: (deps, id) => deps.lifecycle.setFlowEnabled(id, enabled),
    read: (deps, id) => deps.read.getFlow(id),
  });

export const flowsRoutes = [
  route({
    method: 'GET',
    url: '/api/v1/flows',
    access: 'viewer',
    summary: 'List protection flows with their targets and statistics.',
    status: 200,
    response: FlowList,
    handler: async ({ deps }) => ({ items: await deps.read.listFlows() }),
  }),
  route({
    method: 'POST',
    url: '/api/v1/flows',
    access: 'operator',
    summary: 'Create a flow.',
    body: CreateFlowRequest,
    status: 201,
    response: Flow,
    errors: ['ALREADY_EXISTS'],
    handler: async ({ deps, body }) => {
      const id = await deps.lifecycle.createFlow({
        name: body.name,
        description: body.description,
        targetIds: body.target_ids,
        schedule: body.schedule,
        retention: retentionInput(body.retention),
        enabled: body.enabled,
      });
      return found('flow', id, await deps.read.getFlow(id));
    },
  }),
  route({
    method: 'GET',
    url: '/api/v1/flows/:id',
    access: 'viewer',
    summary: 'One flow.',
    params: IdParams,
    status: 200,
    response: Flow,
    handler: async ({ deps, params }) => found('flow', params.id, await deps.read.getFlow(params.id)),
  }),
  route({
    method: 'PATCH',
    url: '/api/v1/flows/:id',
    access: 'operator',
    summary: 'Change some fields of a flow; fields left out stay as they are.',
    params: IdParams,
    body: UpdateFlowRequest,
    status: 200,
    response: Flow,
    errors: ['ALREADY_EXISTS'],
    handler: async ({ deps, params, body }) => {
      await deps.lifecycle.updateFlow(params.id, flowPatch(body));
      return found('flow', params.id, await deps.read.getFlow(params.id));
    },
  }),
  route({
    method: 'DELETE',
    url: '/api/v1/flows/:id',
    access: 'operator',
    summary: 'Delete a flow. Refused while it runs; its past executions stay.',
    params: IdParams,
    status: 204,
    response: null,
    errors: ['IN_USE'],
    handler: async ({ deps, params }) => {
      await deps.lifecycle.deleteFlow(params.id);
    },
  }),
  route({
    method: 'GET',
    url: '/api/v1/flows/:id/history',
    access: 'viewer',
    summary: "The flow's schedule history, newest tick first: runs started on time, catch-up runs after downtime, and skipped ticks with their reason.",
    params: IdParams,
    query: FlowHistoryQuery,
    status: 200,
    response: FlowHistory,
    handler: async ({ deps, params, query }) => ({ items: found('flow', params.id, await deps.read.getFlowHistory(params.id, query.limit)) }),
  }),
  setEnabled(true),
  setEnabled(false),
  actionRoute({
    url: '/api/v1/flows/:id/run',
    access: 'operator',
    summary: 'Run a flow now. Answers at once (202) with the running execution and the jobs it created.',
    status: 202,
    response: ExecutionDetail,
    errors: ['FLOW_ALREADY_RUNNING', 'FLOW_HAS_NO_TARGETS', 'FLOW_DISABLED', 'TARGET_BUSY'],
    what: 'execution',
    act: (deps, id) => deps.lifecycle.runFlow(id, 'api'),
    read: (deps, executionId) => deps.read.getExecution(executionId),
  }),
];
