import type { EntityManager } from '@mikro-orm/postgresql';

export type JobLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface JobLogEntry {
  at: Date;
  level: JobLogLevel;
  message: string;
  fields: Record<string, unknown> | null;
}

/**
 * Appends a line to a job's task log (what REST and the CLI show as the job's log). Pass the
 * transaction's entity manager when the line records a transition, so both commit together.
 */
export async function appendJobLog(em: EntityManager, jobId: string, level: JobLogLevel, message: string, fields?: Record<string, unknown>): Promise<void> {
  await em.execute('insert into job_logs (job_id, level, message, fields) values (?, ?, ?, ?::jsonb)', [jobId, level, message, fields ? JSON.stringify(fields) : null]);
}

export async function readJobLog(em: EntityManager, jobId: string, limit = 1000): Promise<JobLogEntry[]> {
  const rows = await em.execute<{ at: Date; level: JobLogLevel; message: string; fields: Record<string, unknown> | null }[]>(
    'select at, level, message, fields from job_logs where job_id = ? order by id limit ?',
    [jobId, limit],
  );
  return rows.map((r) => ({ at: r.at, level: r.level, message: r.message, fields: r.fields }));
}
