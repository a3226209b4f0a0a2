import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, expect, it } from 'vitest';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
// Inside the repository, so the compiled modules resolve its node_modules.
const outDir = join(repoRoot, 'node_modules', '.cache', `backhaul-pipeline-compiled-${process.pid}`);

afterAll(() => rm(outDir, { recursive: true, force: true }));

it('runs a backup from tsc output, the worker starting from its compiled .js', async () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  await run(process.execPath, [tsc, '-p', join(repoRoot, 'test/pipeline/tsconfig.compiled.json'), '--outDir', outDir], { cwd: repoRoot });
  // ESM like the project; the cache directory is outside the project's package scope.
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');

  const { stdout } = await run(process.execPath, [join(outDir, 'test/pipeline/compiled-smoke.js')], { cwd: repoRoot });
  const out = JSON.parse(stdout.trim()) as { mode: string; imageSha256: string; restoredSha256: string; progress: { chunksTransferred: number; chunksZero: number; chunksDeduplicated: number; done: boolean } };

  expect(out.mode).toBe('compiled');
  expect(out.restoredSha256).toBe(out.imageSha256);
  expect(out.progress).toMatchObject({ chunksTransferred: 3, chunksZero: 1, chunksDeduplicated: 1, done: true });
}, 180_000);
