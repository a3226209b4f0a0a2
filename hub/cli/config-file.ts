import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, EXIT } from './exit-codes.js';

/** What `backhaulctl login` stores: where the hub is, how to trust it, and the token to use. */
export interface StoredLogin {
  hub: string;
  token: string;
  /** The hub's CA certificate (PEM), so later calls need no --ca. */
  ca_pem: string;
}

/** $XDG_CONFIG_HOME/backhaul/config.json, else ~/.config/backhaul/config.json. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'backhaul', 'config.json');
}

export async function readConfig(path = configPath()): Promise<Partial<StoredLogin>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(EXIT.USAGE, `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Partial<StoredLogin>;
  } catch {
    // reported below, with the file's name
  }
  throw new CliError(EXIT.USAGE, `${path} is not a JSON object; fix it or run backhaulctl login again`);
}

/** Written whole and then renamed, readable by its owner only: it holds a secret. */
export async function writeConfig(login: StoredLogin, path = configPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
