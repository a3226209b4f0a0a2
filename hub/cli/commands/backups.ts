import { Command, InvalidArgumentError } from 'commander';
import type { BackupView, JobView } from '../../lifecycle/read-model.js';
import { act, example, pageNote, paged, type Ctx } from '../command-kit.js';
import type { AdminClient } from '../connection.js';
import { EXIT } from '../exit-codes.js';
import { bytes, fields, table } from '../format.js';

const JOB_POLL_MS = 500;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** --disk NAME=PATH */
function parseDestination(v: string, all: { disk_name: string; path: string }[] = []) {
  const i = v.indexOf('=');
  if (i <= 0 || i === v.length - 1) throw new InvalidArgumentError('use DISK=PATH, such as vda=/restore/web-vda.raw');
  return [...all, { disk_name: v.slice(0, i), path: v.slice(i + 1) }];
}

/** Polls a restore or verify job until it ends (jobs have no watch stream), printing each change of status or percent. */
async function waitJob(ctx: Ctx, client: AdminClient, first: JobView): Promise<number> {
  let j = first;
  let shown = '';
  for (;;) {
    const now = `${j.status} ${j.percent}%`;
    if (!ctx.json && now !== shown) process.stdout.write(`job ${j.id} (${j.kind}): ${now}${j.error_code ? ` ${j.error_code}: ${j.error_message ?? ''}` : ''}\n`);
    shown = now;
    if (TERMINAL.has(j.status)) break;
    await new Promise((r) => setTimeout(r, JOB_POLL_MS));
    j = (await client.call('getJob', { id: j.id })).job as unknown as JobView;
  }
  if (ctx.json) ctx.print(j, () => '');
  else if (j.result) process.stdout.write(`result: ${JSON.stringify(j.result)}\n`);
  return j.status === 'succeeded' ? EXIT.OK : EXIT.FAILED;
}

const backupFields = (b: BackupView) =>
  fields([
    ['id', b.id],
    ['target', `${b.target_name ?? b.target_ref} (${b.target_id ?? b.target_ref})`],
    ['agent', b.agent_id],
    ['created', b.created_at],
    ['size', bytes(b.bytes_total)],
    ['parent', b.parent_backup_id],
    ['job', b.job_id],
    ...b.disks.map((d): [string, string] => [`disk ${d.name}`, `${bytes(d.size_bytes)}, ${d.chunk_count} chunks (${d.zero_chunks} zero)${d.full_read_reason ? `, full read: ${d.full_read_reason}` : ''}`]),
  ]);

export function backupsCommand(): Command {
  const cmd = example(new Command('backups').description('Restore points: list, show, restore, verify and delete them.'), 'backhaulctl backups list --target 9a1e…');

  example(
    paged(
      cmd
        .command('list')
        .description('List backups, newest first.')
        .option('--target <id>', 'only this target')
        .option('--agent <id>', "only this agent's"),
    ),
    'backhaulctl backups list --limit 10',
  ).action(
    act(async (ctx, o: { target?: string; agent?: string; limit?: number; offset?: number }) => {
      const res = await (await ctx.client()).call('listBackups', { targetId: o.target, agentId: o.agent, limit: o.limit, offset: o.offset });
      const items = res.items as unknown as BackupView[];
      ctx.print({ items, total: res.total, limit: res.limit, offset: res.offset }, () =>
        table(['ID', 'TARGET', 'CREATED', 'SIZE', 'DISKS', 'PARENT'], items.map((b) => [b.id, b.target_name ?? b.target_ref, b.created_at, bytes(b.bytes_total), b.disks.length, b.parent_backup_id])) +
          pageNote(items.length, res.total),
      );
    }),
  );

  example(cmd.command('show').description('Show one backup.').argument('<id>', 'backup id'), 'backhaulctl backups show 77aa…').action(
    act(async (ctx, id: string) => {
      const { backup } = await (await ctx.client()).call('getBackup', { id });
      ctx.print(backup, () => backupFields(backup as unknown as BackupView));
    }),
  );

  example(
    cmd
      .command('restore')
      .description("Restore disks of a backup to paths on an agent (by default the one that took it).")
      .argument('<id>', 'backup id')
      .requiredOption('--disk <DISK=PATH>', 'where to write a disk; repeat for each', parseDestination)
      .option('--agent <id>', 'agent that writes the images')
      .option('--format <format>', 'raw or qcow2', 'raw')
      .option('--create', 'create the image files (else they must exist)')
      .option('--wait', 'wait for the restore job to end; exit 0 if it succeeded, 1 if not'),
    'backhaulctl backups restore 77aa… --disk sda=/restore/web.raw --create --wait',
  ).action(
    act(async (ctx, id: string, o: { disk: { disk_name: string; path: string }[]; agent?: string; format: string; create?: boolean; wait?: boolean }) => {
      const client = await ctx.client();
      const body = { ...(o.agent ? { agent_id: o.agent } : {}), disks: o.disk.map((d) => ({ ...d, format: o.format, create: o.create === true })) };
      const job = (await client.call('restoreBackup', { id, body })).job as unknown as JobView;
      if (o.wait) return waitJob(ctx, client, job);
      ctx.print(job, () => `started restore job ${job.id}\nFollow it with: backhaulctl jobs show ${job.id}\n`);
    }),
  );

  example(
    cmd.command('verify').description('Re-read every chunk of a backup on the hub.').argument('<id>', 'backup id').option('--wait', 'wait for the verify job to end; exit 0 if it succeeded, 1 if not'),
    'backhaulctl backups verify 77aa… --wait',
  ).action(
    act(async (ctx, id: string, o: { wait?: boolean }) => {
      const client = await ctx.client();
      const job = (await client.call('verifyBackup', { id })).job as unknown as JobView;
      if (o.wait) return waitJob(ctx, client, job);
      ctx.print(job, () => `started verify job ${job.id}\nFollow it with: backhaulctl jobs show ${job.id}\n`);
    }),
  );

  example(cmd.command('delete').description('Delete a backup (admin); refused while a job reads it.').argument('<id>', 'backup id'), 'backhaulctl backups delete 77aa…').action(
    act(async (ctx, id: string) => {
      await (await ctx.client()).call('deleteBackup', { id });
      if (!ctx.json) process.stdout.write(`deleted backup ${id}\n`);
    }),
  );
  return cmd;
}
