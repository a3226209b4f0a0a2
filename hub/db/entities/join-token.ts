import { EntitySchema } from '@mikro-orm/core';

/** A single-use enrollment secret. Only its SHA-256 is stored; the secret is shown once. */
export class JoinToken {
  id!: string;
  tokenHash!: string;
  description: string | null = null;
  createdAt!: Date;
  expiresAt!: Date;
  usedAt: Date | null = null;
  usedByAgent: string | null = null;
}

export const JoinTokenSchema = new EntitySchema<JoinToken>({
  class: JoinToken,
  tableName: 'join_tokens',
  properties: {
    id: { type: 'uuid', primary: true },
    tokenHash: { type: 'text', unique: true },
    description: { type: 'text', nullable: true },
    createdAt: { type: 'datetime' },
    expiresAt: { type: 'datetime' },
    usedAt: { type: 'datetime', nullable: true },
    usedByAgent: { type: 'uuid', nullable: true },
  },
});
