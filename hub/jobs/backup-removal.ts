import type { EntityManager } from '@mikro-orm/postgresql';
import type { Repository } from '../repository/index.js';

export type RemovalOutcome = 'removed' | 'in_use' | 'not_found';

/**
 * Deletes one restore point: the row first, and only if no live restore or verify reads it,
 * then its indexes. Its chunks stay until garbage collection finds nothing names them.
 */
export async function removeBackup(em: EntityManager, repo: Repository, backupId: string): Promise<RemovalOutcome> {
  const gone = await em.execute<{ id: string }[]>(
    `delete from backups b where b.id = ? and not exists (
       select 1 from jobs j where j.status in ('queued', 'dispatched', 'running', 'cancelling')
         and j.kind in ('restore', 'verify') and j.params->>'backupId' = b.id::text)
     returning b.id`,
    [backupId],
  );
  if (gone.length > 0) {
    await repo.discardBackup(backupId);
    return 'removed';
  }
  const exists = await em.execute('select 1 from backups where id = ?', [backupId]);
  return exists.length > 0 ? 'in_use' : 'not_found';
}
