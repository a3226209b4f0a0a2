import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpuSecondsOf, memoryOf } from '../proc-stats.js';

let dropWorks: boolean | null = null;

/**
 * Writes dirty pages back and drops the page cache, so that every tool starts a timed run with
 * its input on disk, not in memory. Needs root (or CAP_SYS_ADMIN); returns false where it is
 * not permitted, in which case every run sees whatever the cache holds (noted in the table).
 */
export function dropCaches(): boolean {
  execFileSync('sync');
  if (dropWorks === false) return false;
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    dropWorks = true;
  } catch {
    dropWorks = false;
  }
  return dropWorks;
}

export function cacheDropPermitted(): boolean | null {
  return dropWorks;
}

/**
 * Resets a process's peak RSS (VmHWM) to its current RSS (Linux: write 5 to clear_refs), so the
 * peak of one job can be read on its own. Returns false where the kernel refuses it.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The CPU and peak RSS a process used over one stretch of work (a job). */
export interface ProcUsage {
  cpuSeconds: number;
  /** RSS when the stretch began: after an earlier job, memory the process kept (the peak starts here). */
  rssAtStart: number;
  peakRss: number;
  /** Whether the peak is this stretch's own (VmHWM reset at its start) or since the process started. */
  peakIsOwn: boolean;
}

/** Starts watching a process: call the returned function at the end of the stretch. */
export function watchProcess(pid: number): () => ProcUsage {
  const peakIsOwn = resetPeakRss(pid);
  const rssAtStart = memoryOf(pid).rss;
  const cpu0 = cpuSecondsOf(pid);
  return () => ({ cpuSeconds: cpuSecondsOf(pid) - cpu0, rssAtStart, peakRss: memoryOf(pid).peakRss, peakIsOwn });
}
