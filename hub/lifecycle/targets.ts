import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Target as ProtoTarget } from '../../shared/gen/backhaul/v1/agent.js';
import type { InventoryDisk } from '../db/entities/agent.js';
import { HubError } from '../errors.js';

export interface NewTarget {
  agentId: string;
  ref: string;
  name: string;
  driver: string;
  disks: InventoryDisk[];
  options?: Record<string, string>;
}

/**
 * Records an agent's inventory as targets: new ones are added, known ones follow the agent's
 * names and disks. Targets added through the API keep what the operator gave them, and targets
 * that leave the inventory stay, since backups and flows still name them.
 */
export async function syncInventory(em: EntityManager, agentId: string, inventory: ProtoTarget[]): Promise<void> {
  if (inventory.length === 0) return;
  const items = inventory.map((t) => ({ ref: t.id, name: t.name || t.id, driver: t.driver, disks: t.disks.map((d) => ({ name: d.name, path: d.path, sizeBytes: Number(d.sizeBytes) })) }));
  await em.execute(
    `insert into targets (id, agent_id, ref, name, driver, disks, options, source, created_at, updated_at)
     select gen_random_uuid(), ?, t.ref, t.name, t.driver, t.disks, '{}'::jsonb, 'inventory', now(), now()
       from jsonb_to_recordset(?::jsonb) as t(ref text, name text, driver text, disks jsonb)
     on conflict (agent_id, ref) do update set name = excluded.name, driver = excluded.driver, disks = excluded.disks, updated_at = now()
       where targets.source = 'inventory'
         and (targets.name, targets.driver, targets.disks) is distinct from (excluded.name, excluded.driver, excluded.disks)`,
    [agentId, JSON.stringify(items)],
  );
}

/** Adds a target the agent does not report itself (for example a VM it cannot discover). */
export async function addTarget(em: EntityManager, t: NewTarget): Promise<string> {
  const agent = await em.execute('select 1 from agents where id = ?', [t.agentId]);
  if (agent.length === 0) throw new HubError('INVALID_ARGUMENT', `agent ${t.agentId} is not enrolled`, { field: 'agent_id' });
  const id = randomUUID();
  try {
    await em.execute(
      `insert into targets (id, agent_id, ref, name, driver, disks, options, source, created_at, updated_at)
       values (?, ?, ?, ?, ?, ?::jsonb, ?::jsonb, 'api', now(), now())`,
      [id, t.agentId, t.ref, t.name, t.driver, JSON.stringify(t.disks), JSON.stringify(t.options ?? {})],
    );
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new HubError('ALREADY_EXISTS', `agent ${t.agentId} already has a target ${t.ref}`, { field: 'ref' });
    throw err;
  }
  return id;
}
