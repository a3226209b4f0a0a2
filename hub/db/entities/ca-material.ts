import { EntitySchema } from '@mikro-orm/core';

/**
 * The hub's certificate authority. One row (id = 1) shared by every hub on the database,
 * so any hub can verify any agent and sign server certificates for itself.
 */
export class CaMaterial {
  id!: number;
  certPem!: string;
  keyPem!: string;
  fingerprint!: string;
  createdAt!: Date;
}

export const CaMaterialSchema = new EntitySchema<CaMaterial>({
  class: CaMaterial,
  tableName: 'ca_material',
  properties: {
    id: { type: 'integer', primary: true, autoincrement: false },
    certPem: { type: 'text' },
    keyPem: { type: 'text' },
    fingerprint: { type: 'text' },
    createdAt: { type: 'datetime' },
  },
});
