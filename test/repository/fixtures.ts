import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CHUNK_SIZE,
  chunkCount,
  DigestList,
  Repository,
  zstdCompress,
  type StagedBackup,
} from '../../hub/repository/index.js';

/** A fresh repository in its own temp directory; call `cleanup` in afterEach. */
export async function tempRepository(): Promise<{ repo: Repository; dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'backhaul-repo-'));
  const repo = await Repository.create(join(dir, 'repo'));
  return { repo, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Plaintext that compresses somewhat, like real disk data: random halves, repeated halves. */
export function chunkData(length = CHUNK_SIZE): Buffer {
  const b = Buffer.alloc(length);
  const block = randomBytes(4096);
  for (let off = 0; off < length; off += 8192) {
    randomBytes(Math.min(4096, length - off)).copy(b, off);
    if (off + 4096 < length) block.copy(b, off + 4096, 0, Math.min(4096, length - off - 4096));
  }
  return b;
}

export interface StoredChunk {
  plain: Buffer;
  digest: string;
}

/** Uploads `plain` the way an agent does (zstd) and returns its digest. */
export async function putPlain(repo: Repository, plain: Buffer): Promise<StoredChunk> {
  const digest = sha256Hex(plain);
  await repo.putChunk(digest, zstdCompress(plain));
  return { plain, digest };
}

/** The digests of an image, as the agent computes them (zero chunks as the all-zero marker). */
export function digestsOf(image: Buffer): DigestList {
  const n = chunkCount(image.length);
  const list = DigestList.fromBytes(Buffer.alloc(n * 32));
  for (let i = 0; i < n; i++) {
    const chunk = image.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE);
    if (chunk.every((b) => b === 0)) continue;
    createHash('sha256').update(chunk).digest().copy(list.bytes, i * 32);
  }
  return list;
}

/** Backs up images the way the data plane will: ask what is missing, upload it, stage, publish. */
export async function backupImages(
  repo: Repository,
  backupId: string,
  disks: Record<string, Buffer>,
  createdAt = new Date(),
): Promise<StagedBackup> {
  const entries = Object.entries(disks).map(([diskId, image]) => ({ diskId, image, digests: digestsOf(image) }));
  for (const { image, digests } of entries) {
    const wanted = new Map<string, number>();
    for (let i = 0; i < digests.length; i++) if (!digests.isZeroAt(i)) wanted.set(digests.hexAt(i), i);
    for (const digest of await repo.missingChunks([...wanted.keys()])) {
      const i = wanted.get(digest)!;
      await repo.putChunk(digest, zstdCompress(image.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE)));
    }
  }
  const staged = await repo.stageBackup({
    backupId,
    createdAt,
    disks: entries.map((e) => ({ diskId: e.diskId, diskSize: e.image.length, digests: e.digests })),
  });
  await repo.publishBackup(staged);
  return staged;
}

/** Rebuilds a disk image from its index alone, reading (and so verifying) every chunk. */
export async function restoreImage(repo: Repository, indexPath: string): Promise<Buffer> {
  const index = await repo.readIndex(indexPath);
  const image = Buffer.alloc(index.diskSize);
  for (let i = 0; i < index.digests.length; i++) {
    if (index.digests.isZeroAt(i)) continue;
    (await repo.readChunk(index.digests.hexAt(i))).copy(image, i * CHUNK_SIZE);
  }
  return image;
}

/** Sets a file's mtime (and atime) `ageMs` into the past. */
export async function age(path: string, ageMs: number, now = Date.now()): Promise<void> {
  const t = new Date(now - ageMs);
  await utimes(path, t, t);
}

/** Expects `promise` to reject with a RepositoryError of `code`; returns it for further checks. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string; details?: unknown }> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof Error) return err;
    throw new Error(`rejected with a non-Error: ${String(err)}`);
  }
  throw new Error('expected a rejection, but the promise resolved');
}
