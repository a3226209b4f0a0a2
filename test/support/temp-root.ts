/**
 * vitest's global setup: every test file, and every process it starts, makes its temporary files
 * under one directory of this run (TMPDIR), removed when the run ends. Tests write disk images,
 * repositories and restores of hundreds of MiB; left in /tmp, each run of the suite added about
 * 1 GiB there.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'backhaul-test-'));
  // Searchable by others, as /tmp is: run as root, the embedded PostgreSQL's initdb runs as user
  // postgres and must reach its data directory below this one.
  chmodSync(root, 0o711);
  const previous = process.env.TMPDIR;
  // Workers are forked after this, so they and their children inherit it.
  process.env.TMPDIR = root;
  return () => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
    rmSync(root, { recursive: true, force: true });
  };
}
