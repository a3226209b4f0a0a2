import { Migration } from '@mikro-orm/migrations';

/** Agents, join tokens and the CA: the foundation schema. */
export class Migration0001Foundation extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table agents (
      id uuid primary key,
      name text not null,
      hostname text not null,
      version text null,
      capabilities jsonb not null default '{}'::jsonb,
      inventory jsonb not null default '[]'::jsonb,
      online boolean not null default false,
      last_seen_at timestamptz null,
      cert_fingerprint text not null,
      enrolled_at timestamptz not null,
      disabled boolean not null default false,
      session_epoch integer not null default 0,
      connected_hub text null
    )`);
    this.addSql(`create index agents_online_idx on agents (online) where online`);
    this.addSql(`create table join_tokens (
      id uuid primary key,
      token_hash text not null unique,
      description text null,
      created_at timestamptz not null,
      expires_at timestamptz not null,
      used_at timestamptz null,
      used_by_agent uuid null references agents (id) on delete set null
    )`);
    this.addSql(`create table ca_material (
      id integer primary key check (id = 1),
      cert_pem text not null,
      key_pem text not null,
      fingerprint text not null,
      created_at timestamptz not null
    )`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table join_tokens');
    this.addSql('drop table agents');
    this.addSql('drop table ca_material');
  }
}
