import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Clock ticks per second, the unit of utime and stime in /proc/PID/stat. */
export const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

export const MIB = 1024 * 1024;

export interface MemorySample {
  /** Resident set size now, bytes (VmRSS). */
  rss: number;
  /** Peak resident set size since the process started, bytes (VmHWM). */
  peakRss: number;
}

/** VmRSS and VmHWM of a process, from /proc/PID/status. */
export function memoryOf(pid: number): MemorySample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${field}`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), peakRss: kib('VmHWM') };
}

/** CPU time (user + system) a process has used so far, in seconds, from /proc/PID/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; fields after its closing parenthesis are fixed.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so utime (field 14) is rest[11] and stime (field 15) rest[12].
  return (Number(rest[11]) + Number(rest[12])) / CLOCK_TICKS;
}

/** Open file descriptors of a process. */
export function openFdsOf(pid: number): number {
  return Number(execFileSync('sh', ['-c', `ls /proc/${pid}/fd | wc -l`], { encoding: 'utf8' }).trim());
}

/** The soft limit on open files of a process, from /proc/PID/limits. */
export function fdLimitOf(pid: number): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

export interface CpuWindow {
  seconds: number;
  cpuSeconds: number;
  /** CPU used over the window, as a percentage of one core. */
  percentOfCore: number;
}

/** Measures a process's CPU use over a window of wall-clock time. */
export async function cpuOver(pid: number, windowMs: number): Promise<CpuWindow> {
  const c0 = cpuSecondsOf(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, windowMs));
  const cpuSeconds = cpuSecondsOf(pid) - c0;
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, cpuSeconds, percentOfCore: (cpuSeconds / seconds) * 100 };
}
