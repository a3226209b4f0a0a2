import { actionRoute, found, route } from './route.js';
import { Backup, BackupPage, IdParams, Job, ListBackupsQuery, RestoreRequest } from './schemas.js';

export const backupsRoutes = [
  route({
    method: 'GET',
    url: '/api/v1/backups',
    access: 'viewer',
    summary: 'List restore points, newest first. Filter by target_id (the target row) or agent_id.',
    query: ListBackupsQuery,
    status: 200,
    response: BackupPage,
    handler: async ({ deps, query }) => deps.read.listBackups({ targetId: query.target_id, agentId: query.agent_id, limit: query.limit, offset: query.offset }),
  }),
  route({
    method: 'GET',
    url: '/api/v1/backups/:id',
    access: 'viewer',
    summary: 'One restore point.',
    params: IdParams,
    status: 200,
    response: Backup,
    handler: async ({ deps, params }) => found('backup', params.id, await deps.read.getBackup(params.id)),
  }),
  route({
    method: 'POST',
    url: '/api/v1/backups/:id/restore',
    access: 'operator',
    summary: "Restore disks of a backup to paths on an agent (by default the backup's own). Answers at once (202) with the restore job.",
    params: IdParams,
    body: RestoreRequest,
    status: 202,
    response: Job,
    errors: ['UNAVAILABLE'],
    handler: async ({ deps, params, body }) => {
      const destinations = body.disks.map((d) => ({ diskName: d.disk_name, path: d.path, format: d.format, create: d.create }));
      const jobId = await deps.lifecycle.restoreBackup(params.id, body.agent_id, destinations);
      return found('job', jobId, await deps.read.getJob(jobId));
    },
  }),
  actionRoute({
    url: '/api/v1/backups/:id/verify',
    access: 'operator',
    summary: 'Re-read every chunk of a backup on the hub. Answers at once (202) with the verify job.',
    status: 202,
    response: Job,
    what: 'job',
    act: (deps, id) => deps.lifecycle.verifyBackup(id),
    read: (deps, jobId) => deps.read.getJob(jobId),
  }),
  route({
    method: 'DELETE',
    url: '/api/v1/backups/:id',
    access: 'admin',
    summary: 'Delete a restore point. Refused while a job reads it; its chunks are freed by the next garbage collection.',
    params: IdParams,
    status: 204,
    response: null,
    errors: ['IN_USE'],
    handler: async ({ deps, params }) => {
      await deps.lifecycle.deleteBackup(params.id);
    },
  }),
];
