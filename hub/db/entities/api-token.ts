import { EntitySchema } from '@mikro-orm/core';

export const API_ROLES = ['viewer', 'operator', 'admin'] as const;
export type ApiRole = (typeof API_ROLES)[number];

/** A bearer token of the REST and admin APIs. Only its SHA-256 is stored; the secret is shown once. */
export class ApiToken {
  id!: string;
  name!: string;
  role!: ApiRole;
  tokenHash!: string;
  createdAt!: Date;
  lastUsedAt: Date | null = null;
  revokedAt: Date | null = null;
}

export const ApiTokenSchema = new EntitySchema<ApiToken>({
  class: ApiToken,
  tableName: 'api_tokens',
  properties: {
    id: { type: 'uuid', primary: true },
    name: { type: 'text' },
    role: { type: 'text' },
    tokenHash: { type: 'text', unique: true },
    createdAt: { type: 'datetime' },
    lastUsedAt: { type: 'datetime', nullable: true },
    revokedAt: { type: 'datetime', nullable: true },
  },
});
