import { EntitySchema } from '@mikro-orm/core';

export interface AgentCapabilities {
  drivers: string[];
  maxConcurrentJobs: number;
}

export interface InventoryDisk {
  name: string;
  path: string;
  sizeBytes: number;
}

export interface InventoryTarget {
  id: string;
  name: string;
  driver: string;
  disks: InventoryDisk[];
}

/** An enrolled agent. Its id is the common name of its client certificate. */
export class Agent {
  id!: string;
  name!: string;
  hostname!: string;
  version: string | null = null;
  capabilities: AgentCapabilities = { drivers: [], maxConcurrentJobs: 0 };
  inventory: InventoryTarget[] = [];
  online = false;
  lastSeenAt: Date | null = null;
  certFingerprint!: string;
  enrolledAt!: Date;
  disabled = false;
  /** Incremented by every accepted Connect; the newest session wins and fences older ones. */
  sessionEpoch = 0;
  /** The hub that holds this agent's stream, while online. */
  connectedHub: string | null = null;
}

export const AgentSchema = new EntitySchema<Agent>({
  class: Agent,
  tableName: 'agents',
  properties: {
    id: { type: 'uuid', primary: true },
    name: { type: 'text' },
    hostname: { type: 'text' },
    version: { type: 'text', nullable: true },
    capabilities: { type: 'json' },
    inventory: { type: 'json' },
    online: { type: 'boolean', default: false },
    lastSeenAt: { type: 'datetime', nullable: true },
    certFingerprint: { type: 'text' },
    enrolledAt: { type: 'datetime' },
    disabled: { type: 'boolean', default: false },
    sessionEpoch: { type: 'integer', default: 0 },
    connectedHub: { type: 'text', nullable: true },
  },
});
