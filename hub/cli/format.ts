/** Output helpers for people; scripts use --json, whose shapes are the REST views. */
import type { StageName } from '../jobs/job-state.js';

export type Cell = string | number | boolean | null | undefined;

const cell = (v: Cell): string => (v === null || v === undefined || v === '' ? '-' : String(v));

/** Columns padded to their widest cell, two spaces apart. */
export function table(head: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map(cell));
  const widths = head.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return `${[line(head), ...text.map(line)].join('\n')}\n`;
}

/** Field: value lines, for one object. */
export function fields(pairs: [string, Cell][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${cell(v)}\n`).join('');
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${UNITS[u]}`;
}

export const rate = (bps: number | null): string => (bps === null ? '-' : `${bytes(Math.round(bps))}/s`);

/** 42s, 3m05s, 2h07m. */
export function duration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

const STAGE_LABELS: Record<StageName, string> = { source_read: 'source read', hash_compress: 'hash + compress', network: 'network', hub_write: 'hub write' };
export const stageLabel = (s: StageName): string => STAGE_LABELS[s];
