import { createHash, X509Certificate } from 'node:crypto';
import { EC_KEY_ALG, EC_SIGN_ALG, subtle, x509 } from './x509.js';

/** SHA-256 over the certificate's DER encoding, lowercase hex: what `--ca-sha256` takes. */
export function certificateSha256(certPemOrDer: string | Buffer): string {
  const der = typeof certPemOrDer === 'string' ? new X509Certificate(certPemOrDer).raw : certPemOrDer;
  return createHash('sha256').update(der).digest('hex');
}

/** Accepts `sha256:AB:CD…`, `abcd…` or `AB:CD…` and returns bare lowercase hex, or null if malformed. */
export function normalizeFingerprint(input: string): string | null {
  const hex = input.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}

export interface KeyAndCsr {
  keyPem: string;
  csrPem: string;
}

/** A fresh P-256 key pair and a CSR for it. The key stays with the caller. */
export async function createKeyAndCsr(commonName: string): Promise<KeyAndCsr> {
  const keys = (await subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeDnValue(commonName)}`,
    keys,
    signingAlgorithm: EC_SIGN_ALG,
  });
  return { keyPem: await exportPkcs8Pem(keys.privateKey), csrPem: csr.toString('pem') };
}

export async function exportPkcs8Pem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** RFC 4514 escaping for a DN attribute value. */
function escapeDnValue(value: string): string {
  return value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/^[ #]|[ ]$/g, (c) => `\\${c}`);
}
