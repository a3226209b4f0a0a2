import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CertificateAuthority } from '../../hub/pki/ca.js';
import { HUB_TLS_NAME } from '../../shared/grpc-options.js';
import { query } from '../support/database.js';
import { ROOT } from '../support/processes.js';

/**
 * The bare grpc-js Hello server (bare-hello-server.ts) as a child process: the peer that
 * shows the transport floor. Its certificate is issued by the hub's own CA, so the same
 * enrolled agents can connect to both.
 */
export class BareHelloPeer {
  private readonly waiters: ((line: string) => void)[] = [];
  readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.waiters.shift()?.(line);
      }
    });
    this.exited = new Promise((res) => child.once('exit', () => res()));
  }

  port = 0;

  get pid(): number {
    return this.child.pid!;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  private nextLine(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiters.push(resolve);
      void this.exited.then(() => reject(new Error('the bare Hello server exited')));
    });
  }

  static async start(databaseUrl: string): Promise<BareHelloPeer> {
    const [row] = await query<{ cert_pem: string; key_pem: string }>(databaseUrl, 'select cert_pem, key_pem from ca_material where id = 1');
    if (!row) throw new Error('the hub has not created its CA yet');
    const ca = await CertificateAuthority.load(row.cert_pem, row.key_pem);
    const { certChainPem, keyPem } = await ca.issueServerCert([HUB_TLS_NAME, 'localhost', '127.0.0.1']);
    const peer = new BareHelloPeer(
      spawn(process.execPath, [join(ROOT, 'dist/test/bench/bare-hello-server.js')], {
        env: { ...process.env, BENCH_PEER_TLS: JSON.stringify({ caPem: ca.certPem, certChainPem, keyPem }) },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    peer.port = (JSON.parse(await peer.nextLine()) as { port: number }).port;
    return peer;
  }

  /** Distinct client certificates and streams served so far. */
  async served(): Promise<{ clientCerts: number; streams: number }> {
    const line = this.nextLine();
    this.child.kill('SIGUSR2');
    return JSON.parse(await line) as { clientCerts: number; streams: number };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}
