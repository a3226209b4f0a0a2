import { X509Certificate } from 'node:crypto';
import { connect, type DetailedPeerCertificate } from 'node:tls';
import { HUB_TLS_NAME } from './grpc-options.js';

/*
 * Trust on first use, pinned: agents (enroll) and operators (backhaulctl login) fetch the hub's
 * CA over an unverified handshake and trust it only if it matches the fingerprint they were given.
 */

/** The self-signed root at the end of the chain the hub presents. */
export function fetchHubCa(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port, servername: HUB_TLS_NAME, rejectUnauthorized: false, ALPNProtocols: ['h2'], timeout: timeoutMs });
    const fail = (msg: string) => {
      sock.destroy();
      reject(new Error(msg));
    };
    sock.once('timeout', () => fail(`no TLS answer from ${host}:${port} within ${timeoutMs} ms`));
    sock.once('error', (err) => fail(`cannot reach the hub at ${host}:${port}: ${err.message}`));
    sock.once('secureConnect', () => {
      let cert: DetailedPeerCertificate | undefined = sock.getPeerCertificate(true);
      while (cert?.issuerCertificate && cert.issuerCertificate !== cert && cert.issuerCertificate.raw && !cert.issuerCertificate.raw.equals(cert.raw)) {
        cert = cert.issuerCertificate;
      }
      sock.end();
      if (!cert?.raw) return fail('the hub presented no certificate');
      const x = new X509Certificate(cert.raw);
      if (!x.ca || !x.checkIssued(x)) return fail('the hub did not present its CA certificate in its chain');
      resolve(x.toString());
    });
  });
}
