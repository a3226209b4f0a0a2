import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Repository } from '../../hub/repository/index.js';
import { chunkData, putPlain, rejection } from './fixtures.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'backhaul-open-'));
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

describe('Repository.create and open', () => {
  it('creates the layout once; create again and open find the same chunks', async () => {
    const root = join(dir, 'r');
    const repo = await Repository.create(root);
    const { digest, plain } = await putPlain(repo, chunkData(1234));
    expect(JSON.parse(await readFile(join(root, 'repository.json'), 'utf8'))).toEqual({ format: 'backhaul-repository', version: 1, chunkSize: 4_194_304 });
    expect((await (await Repository.create(root)).readChunk(digest)).equals(plain)).toBe(true);
    expect((await (await Repository.open(root)).readChunk(digest)).equals(plain)).toBe(true);
  });

  it('refuses a directory that is not a repository, or of another version', async () => {
    const err = await rejection(Repository.open(dir));
    expect(err.code).toBe('REPOSITORY_INVALID');
    expect(err.details).toEqual({ root: dir, reason: 'no marker' });
    const root = join(dir, 'r');
    await Repository.create(root);
    await writeFile(join(root, 'repository.json'), JSON.stringify({ format: 'backhaul-repository', version: 2, chunkSize: 4_194_304 }));
    expect((await rejection(Repository.open(root))).details).toEqual({ root, reason: 'unsupported version' });
    expect((await rejection(Repository.create(root))).code).toBe('REPOSITORY_INVALID');
  });
});
