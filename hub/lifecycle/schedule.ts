import { Cron } from 'croner';
import type { FlowSchedule } from '../db/entities/flow.js';

/**
 * A flow's schedule as times: a cron expression (five fields, or six with seconds first) read in
 * an IANA time zone, so "0 2 * * *" in Europe/Paris is 02:00 there across daylight-saving changes.
 */
function cronOf(s: FlowSchedule): Cron {
  return new Cron(s.cron, { timezone: s.timezone, paused: true, mode: s.cron.trim().split(/\s+/).length === 6 ? '6-part' : '5-part' });
}

/** Why the expression or zone is unusable, or null when it is fine. */
export function scheduleProblem(s: FlowSchedule): { field: 'cron' | 'timezone'; message: string } | null {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: s.timezone });
  } catch {
    return { field: 'timezone', message: `"${s.timezone}" is not an IANA time zone, such as "Europe/Paris"` };
  }
  try {
    const c = cronOf(s);
    if (!c.nextRun()) return { field: 'cron', message: `"${s.cron}" never fires` };
  } catch (err) {
    return { field: 'cron', message: `"${s.cron}" is not a cron expression: ${(err as Error).message}` };
  }
  return null;
}

/** The first tick strictly after `after`, or null if the schedule has no more. */
export function nextTick(s: FlowSchedule, after: Date): Date | null {
  return cronOf(s).nextRun(after);
}

/**
 * The ticks due from `first` (a tick) up to `now`, counted up to `limit`: how many runs a hub
 * that was down has missed. The scheduler turns all of them into one catch-up run.
 */
export function ticksDue(s: FlowSchedule, first: Date, now: Date, limit = 10_000): number {
  if (first > now) return 0;
  const c = cronOf(s);
  let n = 1;
  for (let t = c.nextRun(first); t && t <= now && n < limit; t = c.nextRun(t)) n++;
  return n;
}
