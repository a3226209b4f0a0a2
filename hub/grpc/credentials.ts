import { experimental, type ServerCredentials } from '@grpc/grpc-js';

/**
 * Hands grpc-js fixed certificates through its certificate-provider interface. Updates are
 * delivered on the next tick: grpc-js registers its watcher only after adding the listener,
 * so a synchronous update would be lost and the listener would drop every connection.
 */
class StaticCertificateProvider implements experimental.CertificateProvider {
  constructor(
    private readonly ca: Buffer | null,
    private readonly identity: { certificate: Buffer; privateKey: Buffer } | null,
  ) {}
  addCaCertificateListener(l: experimental.CaCertificateUpdateListener): void {
    if (this.ca) queueMicrotask(() => l({ caCertificate: this.ca! }));
  }
  removeCaCertificateListener(): void {}
  addIdentityCertificateListener(l: experimental.IdentityCertificateUpdateListener): void {
    if (this.identity) queueMicrotask(() => l(this.identity!));
  }
  removeIdentityCertificateListener(): void {}
}

/**
 * TLS that asks every client for a certificate but does not require one: Enroll must work
 * for an agent that has none yet, while Connect refuses a stream without a CA-verified one.
 * grpc-js's plain createSsl can only require client certificates or not ask for them.
 */
export function hubServerCredentials(caPem: string, certChainPem: string, keyPem: string): ServerCredentials {
  return experimental.createCertificateProviderServerCredentials(
    new StaticCertificateProvider(null, { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(keyPem) }),
    new StaticCertificateProvider(Buffer.from(caPem), null),
    false,
  );
}
