import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, query, type TestDatabase } from '../support/database.js';
import { enrollAgent, eventually, freePort, startAgent, startHub, tempDir, type HubProcOptions, type Proc } from '../support/processes.js';

let db: TestDatabase;
const procs: Proc[] = [];

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  await db?.drop();
});

describe('two hubs on one empty database', () => {
  it('start together: migrations run exactly once, one CA, and both serve agents', async () => {
    db = await createTestDatabase();
    const a: HubProcOptions = { port: await freePort(), dataDir: await tempDir('bh-hub'), databaseUrl: db.url, env: { BACKHAUL_HUB_ID: 'hub-a' } };
    const b: HubProcOptions = { port: await freePort(), dataDir: await tempDir('bh-hub'), databaseUrl: db.url, env: { BACKHAUL_HUB_ID: 'hub-b' } };
    const [hubA, hubB] = await Promise.all([startHub(a, 'hub-a'), startHub(b, 'hub-b')]);
    procs.push(hubA, hubB);

    const applied = [hubA, hubB].map((h) => h.count('applied database migrations'));
    expect(applied.sort()).toEqual([0, 1]);
    const migrations = await query<{ name: string }>(db.url, 'select name from mikro_orm_migrations order by id');
    expect(migrations.map((m) => m.name)).toEqual(['0001-foundation', '0002-jobs-and-backups', '0003-lifecycle', '0004-scheduling', '0005-retention-index']);
    expect((await query(db.url, 'select count(*)::int as n from ca_material'))[0]!.n).toBe(1);
    const started = [hubA, hubB].map((h) => h.lines.find((l) => l.msg === 'hub started')!.ca_sha256);
    expect(started[0]).toBe(started[1]);

    // Each hub enrolls and serves its own agent.
    const dirA = await tempDir('bh-agent');
    const dirB = await tempDir('bh-agent');
    const idA = await enrollAgent(a, dirA, 'on-a');
    const idB = await enrollAgent(b, dirB, 'on-b');
    procs.push(startAgent(dirA), startAgent(dirB));
    const rows = await eventually(async () => {
      const r = await query<{ id: string; connected_hub: string }>(db.url, 'select id, connected_hub from agents where online order by name');
      return r.length === 2 ? r : null;
    });
    expect(rows).toEqual([
      { id: idA, connected_hub: 'hub-a' },
      { id: idB, connected_hub: 'hub-b' },
    ]);
  });
});
