import type { EntityManager } from '@mikro-orm/postgresql';
import { CaMaterial } from '../db/entities/ca-material.js';
import { CertificateAuthority } from './ca.js';

/**
 * Loads the CA shared by all hubs on this database, creating it on first use. Creation is
 * race-free: hubs starting together each try an insert of row 1, one wins, and all read it back.
 */
export async function loadOrCreateCa(em: EntityManager): Promise<CertificateAuthority> {
  const existing = await em.findOne(CaMaterial, { id: 1 });
  if (existing) return CertificateAuthority.load(existing.certPem, existing.keyPem);
  const { ca, keyPem } = await CertificateAuthority.create();
  await em
    .createQueryBuilder(CaMaterial)
    .insert({ id: 1, certPem: ca.certPem, keyPem, fingerprint: ca.fingerprint, createdAt: new Date() })
    .onConflict('id')
    .ignore()
    .execute();
  const row = await em.findOneOrFail(CaMaterial, { id: 1 }, { refresh: true });
  return CertificateAuthority.load(row.certPem, row.keyPem);
}
