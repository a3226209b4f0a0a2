import { invalidArgument, RepositoryError } from './errors.js';

/**
 * Which backups a retention policy keeps (FORMAT.md §8). Pure: no clock, no I/O.
 *
 * Semantics follow restic's `forget`. Backups are taken newest first (ties: smaller id first).
 * keepLast n keeps the n newest. keepDaily n keeps, for each of the last n days *that have
 * backups*, the newest backup of that day; hourly, weekly (ISO 8601 weeks, Monday first), monthly
 * and yearly alike. The rules are independent: one backup may be kept by several, and each rule
 * counts only the buckets it kept itself. keepWithinMs keeps every backup created after
 * now − keepWithinMs (restic measures from the newest backup; here from `now`, so a stopped
 * schedule does not keep stale backups forever under this rule, while the count rules still keep
 * the newest). A policy with no rule set keeps everything: an empty policy never deletes.
 *
 * Calendar buckets are taken in `timeZone` (an IANA name, default UTC) through Intl, so a day is
 * a local calendar day, including 23- and 25-hour days at DST changes.
 */
export interface PruneCandidate {
  id: string;
  createdAt: Date;
}

export interface PrunePolicy {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithinMs?: number;
}

export type KeepRule = 'last' | 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly' | 'within' | 'no-policy';

export interface KeepReason {
  rule: KeepRule;
  /** The bucket the backup stands for: "2024-05-03", "2024-W18", "2024-05", "2024", "2024-05-03T14". */
  bucket?: string;
}

export interface PruneDecision<T extends PruneCandidate> {
  /** Newest first, each with why it is kept. */
  keep: { backup: T; reasons: KeepReason[] }[];
  /** Newest first. */
  remove: T[];
}

type CountRule = Exclude<KeepRule, 'within' | 'no-policy'>;
const COUNT_RULES: readonly { rule: CountRule; key: keyof PrunePolicy }[] = [
  { rule: 'last', key: 'keepLast' },
  { rule: 'hourly', key: 'keepHourly' },
  { rule: 'daily', key: 'keepDaily' },
  { rule: 'weekly', key: 'keepWeekly' },
  { rule: 'monthly', key: 'keepMonthly' },
  { rule: 'yearly', key: 'keepYearly' },
];

export function selectForPrune<T extends PruneCandidate>(
  backups: readonly T[],
  policy: PrunePolicy,
  now: Date,
  opts: { timeZone?: string } = {},
): PruneDecision<T> {
  for (const key of [...COUNT_RULES.map((r) => r.key), 'keepWithinMs'] as const) {
    const v = policy[key];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw invalidArgument(`policy.${key}`, `policy.${key} must be a non-negative integer, got ${v}`);
  }
  if (!Number.isFinite(now.getTime())) throw invalidArgument('now', 'now is not a valid date');
  const ids = new Set<string>();
  for (const b of backups) {
    if (ids.has(b.id)) throw invalidArgument('backups', `backup ${b.id} appears twice`);
    ids.add(b.id);
    if (!Number.isFinite(b.createdAt.getTime())) throw invalidArgument('backups', `backup ${b.id} has an invalid createdAt`);
  }
  const calendar = localCalendar(opts.timeZone ?? 'UTC');

  const sorted = [...backups].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const rules = COUNT_RULES.map((r) => ({ rule: r.rule, left: policy[r.key] ?? 0, last: undefined as string | undefined })).filter((r) => r.left > 0);
  const withinMs = policy.keepWithinMs ?? 0;
  if (rules.length === 0 && withinMs === 0) {
    return { keep: sorted.map((backup) => ({ backup, reasons: [{ rule: 'no-policy' }] })), remove: [] };
  }

  const decision: PruneDecision<T> = { keep: [], remove: [] };
  for (const backup of sorted) {
    const reasons: KeepReason[] = [];
    if (withinMs > 0 && backup.createdAt.getTime() > now.getTime() - withinMs) reasons.push({ rule: 'within' });
    const parts = rules.length > 0 ? calendar(backup.createdAt) : undefined;
    for (const r of rules) {
      if (r.left === 0 || !parts) continue;
      const bucket = r.rule === 'last' ? backup.id : bucketOf(r.rule, parts);
      if (bucket === r.last) continue;
      r.last = bucket;
      r.left--;
      reasons.push(r.rule === 'last' ? { rule: 'last' } : { rule: r.rule, bucket });
    }
    if (reasons.length > 0) decision.keep.push({ backup, reasons });
    else decision.remove.push(backup);
  }
  return decision;
}

interface LocalParts {
  year: number;
  month: number;
  day: number;
  hour: number;
}

/** A function from an instant to its calendar fields in `timeZone`; INVALID_ARGUMENT for an unknown zone. */
function localCalendar(timeZone: string): (at: Date) => LocalParts {
  if (timeZone === 'UTC') {
    return (at) => ({ year: at.getUTCFullYear(), month: at.getUTCMonth() + 1, day: at.getUTCDate(), hour: at.getUTCHours() });
  }
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      hourCycle: 'h23',
    });
  } catch (err) {
    throw new RepositoryError('INVALID_ARGUMENT', `unknown time zone ${JSON.stringify(timeZone)}`, { argument: 'timeZone' }, { cause: err });
  }
  return (at) => {
    const parts = format.formatToParts(at);
    const field = (type: Intl.DateTimeFormatPartTypes): number => Number(parts.find((p) => p.type === type)?.value);
    return { year: field('year'), month: field('month'), day: field('day'), hour: field('hour') };
  };
}

function bucketOf(rule: Exclude<CountRule, 'last'>, p: LocalParts): string {
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  switch (rule) {
    case 'hourly':
      return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}`;
    case 'daily':
      return `${pad(p.year, 4)}-${pad(p.month)}-${pad(p.day)}`;
    case 'weekly': {
      const { isoYear, week } = isoWeek(p.year, p.month, p.day);
      return `${pad(isoYear, 4)}-W${pad(week)}`;
    }
    case 'monthly':
      return `${pad(p.year, 4)}-${pad(p.month)}`;
    case 'yearly':
      return pad(p.year, 4);
  }
}

/** ISO 8601 week of a calendar date: weeks start on Monday; week 1 holds the year's first Thursday. */
export function isoWeek(year: number, month: number, day: number): { isoYear: number; week: number } {
  const DAY = 86_400_000;
  const date = Date.UTC(year, month - 1, day);
  const weekday = (new Date(date).getUTCDay() + 6) % 7; // Monday 0 … Sunday 6
  const thursday = new Date(date + (3 - weekday) * DAY);
  const isoYear = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(isoYear, 0, 1)) / (7 * DAY));
  return { isoYear, week };
}
