import { actionRoute, found, route } from './route.js';
import { IdParams, Job, JobLog, JobLogQuery } from './schemas.js';

export const jobsRoutes = [
  route({
    method: 'GET',
    url: '/api/v1/jobs/:id',
    access: 'viewer',
    summary: 'One job with its progress.',
    params: IdParams,
    status: 200,
    response: Job,
    handler: async ({ deps, params }) => found('job', params.id, await deps.read.getJob(params.id)),
  }),
  route({
    method: 'GET',
    url: '/api/v1/jobs/:id/log',
    access: 'viewer',
    summary: "A job's task log, oldest line first.",
    params: IdParams,
    query: JobLogQuery,
    status: 200,
    response: JobLog,
    handler: async ({ deps, params, query }) => ({ items: found('job', params.id, await deps.read.getJobLog(params.id, query.limit)) }),
  }),
  actionRoute({
    url: '/api/v1/jobs/:id/cancel',
    access: 'operator',
    summary: 'Cancel a job. Answers at once (202); a job already on its agent ends cancelled once the agent has stopped.',
    status: 202,
    response: Job,
    what: 'job',
    act: (deps, id) => deps.lifecycle.cancelJob(id),
    read: (deps, id) => deps.read.getJob(id),
  }),
];
