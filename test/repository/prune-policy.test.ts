import { describe, expect, it } from 'vitest';
import { isoWeek, RepositoryError, selectForPrune, type KeepReason, type PrunePolicy } from '../../hub/repository/index.js';

const at = (iso: string): Date => new Date(iso);
const b = (id: string, iso: string): { id: string; createdAt: Date } => ({ id, createdAt: at(iso) });

// 2024-05-10 is a Friday. ISO weeks: 05-06..05-12 W19, 04-29..05-05 W18, 03-15 W11,
// 2023-12-31 (Sunday) 2023-W52, 2023-01-01 (Sunday) 2022-W52. No backup on 2024-05-07.
const HISTORY = [
  b('a', '2024-05-10T15:00:00Z'),
  b('b', '2024-05-10T03:00:00Z'),
  b('c', '2024-05-09T23:59:00Z'),
  b('d', '2024-05-09T03:00:00Z'),
  b('e', '2024-05-08T03:00:00Z'),
  b('f', '2024-05-06T03:00:00Z'),
  b('g', '2024-05-05T03:00:00Z'),
  b('h', '2024-04-30T03:00:00Z'),
  b('i', '2024-03-15T03:00:00Z'),
  b('j', '2023-12-31T03:00:00Z'),
  b('k', '2023-01-01T03:00:00Z'),
];
const NOW = at('2024-05-10T16:00:00Z');

interface Case {
  name: string;
  policy: PrunePolicy;
  backups?: { id: string; createdAt: Date }[];
  timeZone?: string;
  now?: Date;
  /** Kept ids, newest first. */
  keep: string[];
  /** Expected reasons for some kept ids. */
  reasons?: Record<string, KeepReason[]>;
}

const CASES: Case[] = [
  { name: 'keepLast keeps the n newest', policy: { keepLast: 3 }, keep: ['a', 'b', 'c'], reasons: { a: [{ rule: 'last' }] } },
  {
    name: 'keepDaily keeps the newest of each of the last n days',
    policy: { keepDaily: 3 },
    keep: ['a', 'c', 'e'],
    reasons: { a: [{ rule: 'daily', bucket: '2024-05-10' }], c: [{ rule: 'daily', bucket: '2024-05-09' }], e: [{ rule: 'daily', bucket: '2024-05-08' }] },
  },
  { name: 'keepDaily counts only days that have backups (05-07 has none)', policy: { keepDaily: 5 }, keep: ['a', 'c', 'e', 'f', 'g'] },
  {
    name: 'keepWeekly uses ISO weeks, Monday first',
    policy: { keepWeekly: 3 },
    keep: ['a', 'g', 'i'],
    reasons: { g: [{ rule: 'weekly', bucket: '2024-W18' }], i: [{ rule: 'weekly', bucket: '2024-W11' }] },
  },
  { name: 'keepMonthly', policy: { keepMonthly: 3 }, keep: ['a', 'h', 'i'], reasons: { h: [{ rule: 'monthly', bucket: '2024-04' }] } },
  // j (2023-12-31) and k (2023-01-01) share 2023; 2022 has none.
  { name: 'keepYearly', policy: { keepYearly: 5 }, keep: ['a', 'j'], reasons: { j: [{ rule: 'yearly', bucket: '2023' }] } },
  { name: 'keepHourly', policy: { keepHourly: 2 }, keep: ['a', 'b'], reasons: { b: [{ rule: 'hourly', bucket: '2024-05-10T03' }] } },
  {
    name: 'rules are independent and a backup lists every rule that keeps it',
    policy: { keepLast: 1, keepDaily: 2, keepMonthly: 2 },
    keep: ['a', 'c', 'h'],
    reasons: {
      a: [{ rule: 'last' }, { rule: 'daily', bucket: '2024-05-10' }, { rule: 'monthly', bucket: '2024-05' }],
      c: [{ rule: 'daily', bucket: '2024-05-09' }],
      h: [{ rule: 'monthly', bucket: '2024-04' }],
    },
  },
  {
    name: 'keepLast 2 and keepDaily 2 overlap on a but not on b',
    policy: { keepLast: 2, keepDaily: 2 },
    keep: ['a', 'b', 'c'],
    reasons: { b: [{ rule: 'last' }] },
  },
  { name: 'a count above the number of backups keeps them all', policy: { keepLast: 50 }, keep: HISTORY.map((x) => x.id) },
  {
    name: 'keepWithinMs keeps everything newer than now minus the duration',
    policy: { keepWithinMs: 2 * 86_400_000 },
    keep: ['a', 'b', 'c', 'd'],
    reasons: { d: [{ rule: 'within' }] },
  },
  // Within one day of 05-10T16:00: a, b, c (05-09T23:59); monthly adds h for April.
  { name: 'keepWithinMs combined with keepMonthly', policy: { keepWithinMs: 86_400_000, keepMonthly: 2 }, keep: ['a', 'b', 'c', 'h'] },
  {
    name: 'an empty policy removes nothing',
    policy: {},
    keep: HISTORY.map((x) => x.id),
    reasons: { k: [{ rule: 'no-policy' }] },
  },
  { name: 'zero counts mean "rule not set"', policy: { keepLast: 0, keepDaily: 0 }, keep: HISTORY.map((x) => x.id) },
  { name: 'no backups, nothing to do', policy: { keepLast: 3 }, backups: [], keep: [] },
  {
    name: 'day boundaries in UTC by default',
    policy: { keepDaily: 2 },
    backups: [b('late', '2024-05-09T23:30:00Z'), b('early', '2024-05-10T01:00:00Z')],
    keep: ['early', 'late'],
  },
  {
    name: 'day boundaries in a given time zone (New York, UTC-4: both on 05-09)',
    policy: { keepDaily: 2 },
    timeZone: 'America/New_York',
    backups: [b('late', '2024-05-09T23:30:00Z'), b('early', '2024-05-10T01:00:00Z')],
    keep: ['early'],
    reasons: { early: [{ rule: 'daily', bucket: '2024-05-09' }] },
  },
  {
    name: 'a DST day (Berlin, 2024-03-31 has 23 hours) is one local day',
    policy: { keepDaily: 3 },
    timeZone: 'Europe/Berlin',
    backups: [b('x', '2024-03-30T23:30:00Z'), b('y', '2024-03-31T21:30:00Z'), b('z', '2024-03-31T22:30:00Z')],
    keep: ['z', 'y'],
    reasons: { z: [{ rule: 'daily', bucket: '2024-04-01' }], y: [{ rule: 'daily', bucket: '2024-03-31' }] },
  },
  {
    name: 'the same DST instants in UTC fall on other days',
    policy: { keepDaily: 3 },
    backups: [b('x', '2024-03-30T23:30:00Z'), b('y', '2024-03-31T21:30:00Z'), b('z', '2024-03-31T22:30:00Z')],
    keep: ['z', 'x'],
  },
  {
    name: 'ISO weeks across a year boundary (2024-12-30 is in 2025-W01)',
    policy: { keepWeekly: 2 },
    backups: [b('sun29', '2024-12-29T12:00:00Z'), b('mon30', '2024-12-30T12:00:00Z'), b('sun05', '2025-01-05T12:00:00Z')],
    keep: ['sun05', 'sun29'],
    reasons: { sun05: [{ rule: 'weekly', bucket: '2025-W01' }], sun29: [{ rule: 'weekly', bucket: '2024-W52' }] },
  },
  {
    name: 'monthly in a zone east of UTC moves a month-end backup into the next month',
    policy: { keepMonthly: 2 },
    timeZone: 'Asia/Tokyo',
    backups: [b('may', '2024-05-31T16:00:00Z'), b('may2', '2024-05-31T14:00:00Z')],
    keep: ['may', 'may2'],
    reasons: { may: [{ rule: 'monthly', bucket: '2024-06' }], may2: [{ rule: 'monthly', bucket: '2024-05' }] },
  },
  {
    name: 'equal times: the smaller id counts as newer',
    policy: { keepLast: 1 },
    backups: [b('y', '2024-01-01T00:00:00Z'), b('x', '2024-01-01T00:00:00Z')],
    keep: ['x'],
  },
];

describe('selectForPrune', () => {
  it.each(CASES)('$name', ({ policy, backups = HISTORY, timeZone, now = NOW, keep, reasons }) => {
    const result = selectForPrune(backups, policy, now, { timeZone });
    expect(result.keep.map((k) => k.backup.id)).toEqual(keep);
    const kept = new Set(keep);
    const byAge = [...backups].sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (x.id < y.id ? -1 : 1));
    expect(result.remove.map((r) => r.id)).toEqual(byAge.filter((x) => !kept.has(x.id)).map((x) => x.id));
    for (const k of result.keep) expect(k.reasons.length).toBeGreaterThan(0);
    for (const [id, expected] of Object.entries(reasons ?? {})) {
      expect(result.keep.find((k) => k.backup.id === id)?.reasons, id).toEqual(expected);
    }
  });

  it('does not depend on the input order and returns the caller\'s objects', () => {
    const shuffled = [HISTORY[5], HISTORY[0], HISTORY[10], HISTORY[3], HISTORY[7], HISTORY[1], HISTORY[9], HISTORY[2], HISTORY[8], HISTORY[4], HISTORY[6]];
    const policy = { keepDaily: 4, keepMonthly: 3 };
    const a = selectForPrune(HISTORY, policy, NOW);
    const b2 = selectForPrune(shuffled, policy, NOW);
    expect(b2).toEqual(a);
    expect(b2.keep[0].backup).toBe(HISTORY[0]);
  });

  it.each([
    [{ keepLast: -1 }, 'policy.keepLast'],
    [{ keepDaily: 1.5 }, 'policy.keepDaily'],
    [{ keepWeekly: Number.NaN }, 'policy.keepWeekly'],
    [{ keepWithinMs: -5 }, 'policy.keepWithinMs'],
  ] as [PrunePolicy, string][])('refuses the bad policy %j', (policy, argument) => {
    expect(() => selectForPrune(HISTORY, policy, NOW)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', details: { argument } }));
  });

  it('refuses duplicate ids, invalid dates and unknown time zones', () => {
    expect(() => selectForPrune([HISTORY[0], HISTORY[0]], { keepLast: 1 }, NOW)).toThrow(RepositoryError);
    expect(() => selectForPrune([b('x', 'not a date')], { keepLast: 1 }, NOW)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => selectForPrune(HISTORY, { keepDaily: 1 }, NOW, { timeZone: 'Mars/Olympus' })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', details: { argument: 'timeZone' } }),
    );
  });
});

describe('isoWeek', () => {
  it.each([
    [2024, 5, 10, 2024, 19],
    [2021, 1, 3, 2020, 53],
    [2021, 1, 4, 2021, 1],
    [2008, 12, 29, 2009, 1],
    [2010, 1, 3, 2009, 53],
    [2026, 12, 31, 2026, 53],
    [2023, 1, 1, 2022, 52],
  ])('%i-%i-%i is %i-W%i', (y, m, d, isoYear, week) => {
    expect(isoWeek(y, m, d)).toEqual({ isoYear, week });
  });
});
