/**
 * `systemd-analyze verify` on the shipped unit files; any output at all fails the test.
 *
 * verify exits 0 on syntax warnings ("Unknown key …, ignoring"), so the test also demands
 * empty output. It also checks that every ExecStart binary exists, and /usr/bin/backhaul-*
 * is not installed here, so the units are verified inside a throwaway root (--root=): the
 * host's /usr/lib/systemd/system (for network-online.target, multi-user.target, …), the units
 * unchanged in /etc/systemd/system, and an executable stub at each ExecStart path. The unit
 * files themselves are not rewritten. Two negative controls prove the harness can fail.
 *
 * Needs `systemd-analyze` (Debian package `systemd`); without it the test fails, never skips.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const UNIT_DIR = join(REPO, 'systemd');
const UNITS = ['backhaul-hub.service', 'backhaul-agent.service'];
const HOST_SYSTEM_UNITS = '/usr/lib/systemd/system';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function systemdAnalyze(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/bin'])) {
    const candidate = join(dir, 'systemd-analyze');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  throw new Error('systemd-analyze not found; install it: apt-get install -y --no-install-recommends systemd');
}

/** Absolute program paths of ExecStart*=, ExecStop*=, ExecReload= lines, prefixes (-@:+!) removed. */
function execPaths(unitText: string): string[] {
  const paths: string[] = [];
  for (const line of unitText.split('\n')) {
    const m = /^\s*Exec(?:Start|StartPre|StartPost|Stop|StopPost|Reload|Condition)\s*=\s*[-@:+!]*(\S+)/.exec(line);
    if (m) paths.push(m[1]);
  }
  return paths;
}

/** A root holding the host's system units, the given unit texts, and stubs for their binaries. */
function makeRoot(units: Record<string, string>, opts: { stubs?: boolean } = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'backhaul-units-'));
  roots.push(root);
  mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
  cpSync(HOST_SYSTEM_UNITS, join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  symlinkSync('usr/lib', join(root, 'lib'));
  const etc = join(root, 'etc/systemd/system');
  mkdirSync(etc, { recursive: true });
  for (const [name, text] of Object.entries(units)) {
    writeFileSync(join(etc, name), text);
    if (opts.stubs === false) continue;
    for (const bin of execPaths(text)) {
      const stub = join(root, bin);
      mkdirSync(dirname(stub), { recursive: true });
      writeFileSync(stub, '#!/bin/sh\nexit 0\n');
      chmodSync(stub, 0o755);
    }
  }
  return root;
}

/** Runs verify on the units of a root; returns exit status and everything it printed. */
function verify(root: string, names: string[]): { status: number | null; output: string } {
  const args = ['verify', `--root=${root}`, ...names.map((n) => join(root, 'etc/systemd/system', n))];
  const res = spawnSync(systemdAnalyze(), args, {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
    // Pin logging so an inherited SYSTEMD_LOG_LEVEL=err cannot hide warnings.
    env: { ...process.env, SYSTEMD_LOG_LEVEL: 'info', SYSTEMD_LOG_COLOR: '0', SYSTEMD_LOG_TARGET: 'console' },
  });
  if (res.error) throw res.error;
  return { status: res.status, output: `${res.stdout}${res.stderr}`.trim() };
}

const shipped = Object.fromEntries(UNITS.map((n) => [n, readFileSync(join(UNIT_DIR, n), 'utf8')]));

describe('systemd units', () => {
  it('pass systemd-analyze verify with no output', () => {
    const res = verify(makeRoot(shipped), UNITS);
    expect(res.output, 'systemd-analyze verify reported problems').toBe('');
    expect(res.status).toBe(0);
  });

  it('start binaries that package.json installs', () => {
    const bins = Object.keys((JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin);
    for (const name of UNITS) {
      const paths = execPaths(shipped[name]);
      expect(paths.length, `${name} has no ExecStart`).toBeGreaterThan(0);
      for (const p of paths) {
        expect(dirname(p)).toBe('/usr/bin');
        expect(bins).toContain(basename(p));
      }
    }
  });

  it('negative control: a misspelt setting is reported', () => {
    const broken = shipped['backhaul-hub.service'].replace('\nProtectHome=yes\n', '\nProtectHom=yes\n');
    expect(broken).not.toBe(shipped['backhaul-hub.service']);
    const res = verify(makeRoot({ 'backhaul-hub.service': broken }), ['backhaul-hub.service']);
    expect(res.output).toContain("Unknown key 'ProtectHom'");
  });

  it('negative control: a missing ExecStart binary is reported', () => {
    const res = verify(makeRoot({ 'backhaul-agent.service': shipped['backhaul-agent.service'] }, { stubs: false }), ['backhaul-agent.service']);
    expect(res.output).toContain('/usr/bin/backhaul-agent is not executable');
    expect(res.status).not.toBe(0);
  });
});
