/** One row of the benchmark table: a measure, its peer on the same input, and its target. */
export interface ResultRow {
  measure: string;
  backhaul: string;
  peer: string;
  /** Backhaul divided by the peer, where the peer is comparable. */
  vsPeer: string;
  target: string;
  /** Backhaul divided by the target: below 1 is within it for "at most" targets. */
  vsTarget: string;
  /** For a floor row: whether the target's time is above what the required work alone costs. */
  verdict: 'met' | 'missed' | 'reachable' | 'unreachable' | '';
}

const HEAD: [keyof ResultRow, string][] = [
  ['measure', 'measure'],
  ['backhaul', 'Backhaul'],
  ['peer', 'peer'],
  ['vsPeer', 'Backhaul / peer'],
  ['target', 'target'],
  ['vsTarget', 'Backhaul / target'],
  ['verdict', 'verdict'],
];

/** A Markdown table, padded so it also reads well in a terminal. */
export function markdownTable(rows: ResultRow[]): string {
  const cells = [HEAD.map(([, h]) => h), ...rows.map((r) => HEAD.map(([k]) => r[k] || '—'))];
  const widths = HEAD.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(cells[0]!), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.slice(1).map(line)].join('\n');
}

export const ratio = (a: number, b: number): string => (b > 0 ? (a / b).toFixed(2) : '—');
export const ms = (v: number): string => `${v.toFixed(1)} ms`;
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
export const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;
export const pct = (v: number): string => `${v.toFixed(2)} %`;
export const count = (n: number): string => n.toLocaleString('en-US');
export const verdict = (ok: boolean): 'met' | 'missed' => (ok ? 'met' : 'missed');
