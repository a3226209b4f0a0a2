import { readFileSync } from 'node:fs';

// Read once from package.json so hub, agent and CLI report the same version.
const pkgUrl = new URL('../../package.json', import.meta.url);
export const VERSION: string = (JSON.parse(readFileSync(pkgUrl, 'utf8')) as { version: string }).version;
