import { randomBytes, randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { certificateSha256, exportPkcs8Pem } from '../../shared/certs.js';
import { EC_KEY_ALG, EC_SIGN_ALG, subtle, x509 } from '../../shared/x509.js';

/** URI SAN that names an agent in its certificate, beside CN = agent id. */
export const agentUri = (agentId: string): string => `urn:backhaul:agent:${agentId}`;

const DAY_MS = 86_400_000;
export const CA_VALIDITY_DAYS = 3650;
export const AGENT_CERT_VALIDITY_DAYS = 365;
export const SERVER_CERT_VALIDITY_DAYS = 90;

export class CsrRejectedError extends Error {
  readonly code = 'CSR_INVALID';
}

/** The CA in usable form: its certificate and its signing key. */
export class CertificateAuthority {
  private constructor(
    readonly certPem: string,
    readonly cert: x509.X509Certificate,
    private readonly key: CryptoKey,
  ) {}

  get fingerprint(): string {
    return certificateSha256(this.certPem);
  }

  static async create(): Promise<{ ca: CertificateAuthority; keyPem: string }> {
    const keys = (await subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Backhaul CA ${randomUUID().slice(0, 8)}`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + CA_VALIDITY_DAYS * DAY_MS),
      keys,
      signingAlgorithm: EC_SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const certPem = cert.toString('pem');
    return { ca: new CertificateAuthority(certPem, cert, keys.privateKey), keyPem: await exportPkcs8Pem(keys.privateKey) };
  }

  static async load(certPem: string, keyPem: string): Promise<CertificateAuthority> {
    const key = await subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), EC_KEY_ALG, false, ['sign']);
    return new CertificateAuthority(certPem, new x509.X509Certificate(certPem), key);
  }

  /**
   * Signs an agent's CSR. The CSR's own subject is ignored: the certificate names the agent
   * by the id the hub chose, in CN and in a URI SAN, and is good for client auth only.
   */
  async signAgentCsr(csrPem: string, agentId: string): Promise<string> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw new CsrRejectedError(`the CSR is not a valid PKCS#10 request: ${(err as Error).message}`);
    }
    if (!(await csr.verify())) throw new CsrRejectedError('the CSR signature does not verify');
    const alg = csr.publicKey.algorithm as EcKeyAlgorithm | RsaHashedKeyAlgorithm;
    const acceptable =
      (alg.name === 'ECDSA' && ['P-256', 'P-384'].includes((alg as EcKeyAlgorithm).namedCurve)) ||
      (alg.name === 'RSASSA-PKCS1-v1_5' && (alg as RsaHashedKeyAlgorithm).modulusLength >= 2048);
    if (!acceptable) throw new CsrRejectedError('the CSR key must be ECDSA P-256/P-384 or RSA of at least 2048 bits');
    return this.issue({
      subject: `CN=${agentId}`,
      publicKey: csr.publicKey,
      days: AGENT_CERT_VALIDITY_DAYS,
      san: [{ type: 'url', value: agentUri(agentId) }],
      eku: x509.ExtendedKeyUsage.clientAuth,
    });
  }

  /** A fresh key and certificate for a hub's TLS listener, chained to this CA. */
  async issueServerCert(names: string[]): Promise<{ certChainPem: string; keyPem: string }> {
    const keys = (await subtle.generateKey(EC_KEY_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const san = [...new Set(names)].map((n) => (isIP(n) ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n }));
    const certPem = await this.issue({
      subject: `CN=${names[0]}`,
      publicKey: keys.publicKey,
      days: SERVER_CERT_VALIDITY_DAYS,
      san,
      eku: x509.ExtendedKeyUsage.serverAuth,
    });
    // The CA travels in the chain so an enrolling agent can see it and check its fingerprint.
    return { certChainPem: `${certPem}\n${this.certPem}\n`, keyPem: await exportPkcs8Pem(keys.privateKey) };
  }

  private async issue(p: {
    subject: string;
    publicKey: x509.PublicKey | CryptoKey;
    days: number;
    san: x509.JsonGeneralNames;
    eku: x509.ExtendedKeyUsage;
  }): Promise<string> {
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: p.subject,
      issuer: this.cert.subject,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + p.days * DAY_MS),
      publicKey: p.publicKey,
      signingKey: this.key,
      signingAlgorithm: EC_SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([p.eku]),
        new x509.SubjectAlternativeNameExtension(p.san),
        await x509.AuthorityKeyIdentifierExtension.create(this.cert),
      ],
    });
    return cert.toString('pem');
  }
}

/** A positive 128-bit serial number (the high bit cleared keeps the DER integer positive). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}
