import { EntitySchema } from '@mikro-orm/core';
import type { InventoryDisk } from './agent.js';

/** A protectable VM or image on one agent. Jobs and backups name it by (agentId, ref). */
export class Target {
  id!: string;
  agentId!: string;
  /** The agent's own id for the target. */
  ref!: string;
  name!: string;
  driver!: string;
  disks!: InventoryDisk[];
  /** Driver options sent with each backup, such as the QMP socket. */
  options: Record<string, string> = {};
  source!: 'inventory' | 'api';
  createdAt!: Date;
  updatedAt!: Date;
}

export const TargetSchema = new EntitySchema<Target>({
  class: Target,
  tableName: 'targets',
  properties: {
    id: { type: 'uuid', primary: true },
    agentId: { type: 'uuid' },
    ref: { type: 'text' },
    name: { type: 'text' },
    driver: { type: 'text' },
    disks: { type: 'json' },
    options: { type: 'json' },
    source: { type: 'text' },
    createdAt: { type: 'datetime' },
    updatedAt: { type: 'datetime' },
  },
});
