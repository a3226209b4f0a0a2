import { Command } from 'commander';
import type { ConnectionFlags } from '../connection.js';
import { AdminClient, readCa } from '../connection.js';
import { configPath, readConfig, writeConfig } from '../config-file.js';
import { CliError, EXIT } from '../exit-codes.js';
import { example } from '../command-kit.js';

/** The hub's CA fetched over an unverified handshake, trusted only if its fingerprint is the one given. */
async function pinnedCa(hub: string, fingerprint: string): Promise<string> {
  // Loaded here only: the certificate helpers pull in the X.509 library, which other commands do not need.
  const [{ certificateSha256, normalizeFingerprint }, { fetchHubCa }] = await Promise.all([import('../../../shared/certs.js'), import('../../../shared/hub-ca.js')]);
  const expected = normalizeFingerprint(fingerprint);
  if (!expected) throw new CliError(EXIT.USAGE, '--ca-sha256 must be 64 hex digits (colons and a "sha256:" prefix are allowed)');
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(hub.trim());
  if (!m) throw new CliError(EXIT.USAGE, `--hub must be HOST:PORT, got "${hub}"`);
  const pem = await fetchHubCa(m[1]!, Number(m[2]), 10_000).catch((err: unknown) => {
    throw new CliError(EXIT.UNREACHABLE, (err as Error).message);
  });
  const actual = certificateSha256(pem);
  if (actual !== expected) throw new CliError(EXIT.UNREACHABLE, `the hub's CA fingerprint is ${actual}, not the expected ${expected}; refusing to trust this hub`);
  return pem;
}

export function loginCommand(): Command {
  return example(
    new Command('login')
      .description(`Check a hub and token, and store them (with the hub's CA) in ${configPath()} for later calls.`)
      .option('--ca-sha256 <fingerprint>', "fetch the hub's CA and trust it if it has this SHA-256 (printed by backhaul-hub ca --sha256); instead of --ca"),
    'backhaulctl login --hub hub.example.net:7443 --token bh_… --ca-sha256 4f1c…',
    'backhaulctl login --hub hub.example.net:7443 --token bh_… --ca hub-ca.pem',
  ).action(async function (this: Command, o: { caSha256?: string }) {
    const flags = this.optsWithGlobals<ConnectionFlags>();
    const stored = await readConfig();
    const hub = flags.hub ?? process.env.BACKHAUL_HUB;
    const token = flags.token ?? process.env.BACKHAUL_TOKEN;
    if (!hub) throw new CliError(EXIT.USAGE, 'login needs --hub HOST:PORT (or BACKHAUL_HUB)');
    if (!token) throw new CliError(EXIT.BAD_TOKEN, 'login needs --token (or BACKHAUL_TOKEN): an API token from "backhaul-hub api-token create" or "backhaulctl tokens create"');
    const caFile = flags.ca ?? process.env.BACKHAUL_CA;
    const caPem = caFile ? await readCa(caFile) : o.caSha256 ? await pinnedCa(hub, o.caSha256) : stored.hub === hub ? stored.ca_pem : undefined;
    if (!caPem) throw new CliError(EXIT.USAGE, "login needs the hub's CA: --ca FILE (from backhaul-hub ca) or --ca-sha256 FINGERPRINT (from backhaul-hub ca --sha256)");
    const client = new AdminClient({ hub, token, caPem });
    try {
      // Any role may list agents: this proves the hub answers and knows the token.
      await client.call('listAgents', {});
    } finally {
      client.close();
    }
    await writeConfig({ hub, token, ca_pem: caPem });
    process.stdout.write(`logged in to ${hub}; saved in ${configPath()}\n`);
  });
}
