import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dropCaches } from './system.js';

const run = promisify(execFile);

export interface PeerTools {
  restic: string;
  borg: string;
  /** Seconds apt-get took, or null when both were already installed. */
  installSeconds: number | null;
}

async function version(cmd: string, args: string[]): Promise<string | null> {
  try {
    const { stdout } = await run(cmd, args);
    return stdout.trim().split('\n')[0]!;
  } catch {
    return null;
  }
}

/** Finds restic and borg, installing them from Debian when either is missing. */
export async function ensurePeers(progress: (m: string) => void): Promise<PeerTools> {
  let restic = await version('restic', ['version']);
  let borg = await version('borg', ['--version']);
  let installSeconds: number | null = null;
  if (!restic || !borg) {
    progress('installing restic and borgbackup from Debian (apt-get)');
    const t0 = performance.now();
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    await run('apt-get', ['update'], { env, maxBuffer: 64 * 1024 * 1024 });
    await run('apt-get', ['install', '-y', '--no-install-recommends', 'restic', 'borgbackup'], { env, maxBuffer: 64 * 1024 * 1024 });
    installSeconds = (performance.now() - t0) / 1000;
    restic = await version('restic', ['version']);
    borg = await version('borg', ['--version']);
    if (!restic || !borg) throw new Error('restic or borg is still missing after apt-get install');
  }
  return { restic, borg, installSeconds };
}

/** One timed run of a peer: wall time, and its CPU and peak RSS as /usr/bin/time reports them. */
export interface PeerRun {
  seconds: number;
  cpuSeconds: number;
  peakRss: number;
}

/** Runs a command under /usr/bin/time after dropping the page cache; throws with its output if it fails. */
async function timed(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string; timeFile: string; syncAfter?: boolean }): Promise<PeerRun> {
  dropCaches();
  const t0 = performance.now();
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '%e %M %U %S', '-o', opts.timeFile, cmd, ...args], { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (c: Buffer) => {
      output = (output + c.toString('utf8')).slice(-4000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('exit', (c) => resolve({ code: c, output }));
  });
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}: ${output}`);
  // The restore is durable only when written back; Backhaul's restore fsyncs its image.
  if (opts.syncAfter) await run('sync');
  const seconds = (performance.now() - t0) / 1000;
  const [, maxKiB, user, sys] = (await readFile(opts.timeFile, 'utf8')).trim().split('\n').pop()!.split(' ').map(Number);
  return { seconds, cpuSeconds: user! + sys!, peakRss: maxKiB! * 1024 };
}

/** A peer's three runs on the benchmark's image. */
export interface PeerResult {
  full: PeerRun;
  second: PeerRun;
  restore: PeerRun;
  /** Where the restore put the image (to be checked, then removed). */
  restoredPath: string;
}

export interface PeerContext {
  dir: string;
  image: string;
}

/**
 * restic: `restic init`, then `restic backup IMAGE` (full), again after the rewrite (second),
 * then `restic restore latest` (with a sync, as Backhaul's restore fsyncs; restic 0.14 cannot
 * restore sparse, later versions take --sparse).
 * restic always encrypts (AES-256-CTR + Poly1305) and compresses (zstd "auto").
 */
export class Restic {
  private readonly env: NodeJS.ProcessEnv;
  private readonly repo: string;

  constructor(private readonly ctx: PeerContext) {
    this.repo = join(ctx.dir, 'restic-repo');
    this.env = { ...process.env, RESTIC_REPOSITORY: this.repo, RESTIC_PASSWORD: 'backhaul-bench', RESTIC_CACHE_DIR: join(ctx.dir, 'restic-cache') };
  }

  async init(): Promise<void> {
    await run('restic', ['init'], { env: this.env });
  }

  backup(timeFile: string): Promise<PeerRun> {
    return timed('restic', ['backup', '--quiet', this.ctx.image], { env: this.env, timeFile });
  }

  async restore(target: string, timeFile: string): Promise<{ run: PeerRun; path: string }> {
    await mkdir(target, { recursive: true });
    // restic 0.14 (Debian 12) has no --sparse: it writes the zeros too.
    const r = await timed('restic', ['restore', 'latest', '--target', target], { env: this.env, timeFile, syncAfter: true });
    return { run: r, path: join(target, this.ctx.image) };
  }
}

/**
 * borg with the fixed chunker at 4 MiB (`--chunker-params fixed,4194304`), the closest peer to
 * Backhaul's format. `--encryption=none`: the repository is neither encrypted nor authenticated,
 * which spares borg the AES/HMAC work restic always does; Backhaul does not encrypt at rest
 * either (its data is encrypted in transit by mTLS). Default compression (lz4).
 */
export class Borg {
  private readonly env: NodeJS.ProcessEnv;
  private readonly repo: string;
  private n = 0;

  constructor(private readonly ctx: PeerContext) {
    this.repo = join(ctx.dir, 'borg-repo');
    this.env = {
      ...process.env,
      BORG_BASE_DIR: join(ctx.dir, 'borg-base'),
      BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
      BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
    };
  }

  async init(): Promise<void> {
    await run('borg', ['init', '--encryption=none', this.repo], { env: this.env });
  }

  backup(timeFile: string): Promise<PeerRun> {
    this.n += 1;
    return timed('borg', ['create', '--chunker-params', 'fixed,4194304', `${this.repo}::n${this.n}`, this.ctx.image], { env: this.env, timeFile });
  }

  async restore(target: string, timeFile: string): Promise<{ run: PeerRun; path: string }> {
    await mkdir(target, { recursive: true });
    const r = await timed('borg', ['extract', '--sparse', `${this.repo}::n${this.n}`], { env: this.env, cwd: target, timeFile, syncAfter: true });
    return { run: r, path: join(target, this.ctx.image.replace(/^\/+/, '')) };
  }
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
