import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** What enrollment leaves in the state directory. */
export interface AgentIdentity {
  agentId: string;
  hub: string;
  name: string;
  enrolledAt: string;
}

export interface AgentCredentials {
  identity: AgentIdentity;
  keyPem: string;
  certPem: string;
  caPem: string;
}

const FILES = { identity: 'agent.json', key: 'agent.key', cert: 'agent.crt', ca: 'ca.crt' } as const;

export class NotEnrolledError extends Error {
  readonly code = 'NOT_ENROLLED';
}

export function isEnrolled(stateDir: string): boolean {
  return existsSync(join(stateDir, FILES.identity)) && existsSync(join(stateDir, FILES.key));
}

export async function loadCredentials(stateDir: string): Promise<AgentCredentials> {
  if (!isEnrolled(stateDir)) throw new NotEnrolledError(`no enrollment found in ${stateDir}; run \`backhaul-agent enroll\` first`);
  const read = (f: string) => readFile(join(stateDir, f), 'utf8');
  return {
    identity: JSON.parse(await read(FILES.identity)) as AgentIdentity,
    keyPem: await read(FILES.key),
    certPem: await read(FILES.cert),
    caPem: await read(FILES.ca),
  };
}

/** Writes every file with mode 0600 through a temp file and rename, so a crash never leaves half a key. */
export async function saveCredentials(stateDir: string, c: AgentCredentials): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const put = async (f: string, data: string) => {
    const tmp = join(stateDir, `.${f}.tmp`);
    await writeFile(tmp, data, { mode: 0o600, flush: true });
    await rename(tmp, join(stateDir, f));
  };
  await put(FILES.key, c.keyPem);
  await put(FILES.cert, c.certPem);
  await put(FILES.ca, c.caPem);
  // Written last: its presence means the enrollment is complete.
  await put(FILES.identity, `${JSON.stringify(c.identity, null, 2)}\n`);
}
