/** Number formatting, cadences and the Markdown table shared by the report's console table, BENCHMARKS.md and the chart. */
import type { RunResult } from '../run/results.ts';

export const INTERVAL: Record<string, number> = { tui: 100, web: 250 };
/** Updates per client per second at each cadence. */
export const CADENCE: Record<string, number> = { tui: 10, web: 4 };

export const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : '–';
export const ms = (n: number): string => (Number.isFinite(n) ? (n >= 100 ? fmt(n, 0) : fmt(n, 1)) : '–');
export const kb = (bytes: number): string =>
  bytes >= 1024 * 1024 ? `${fmt(bytes / 1048576, 1)} MB` : `${fmt(bytes / 1024, 1)} KB`;
export const pct = (ratio: number): string => (Number.isFinite(ratio) ? `${fmt(ratio * 100, 0)}%` : '–');

export function mainType(run: RunResult): 'tui' | 'web' {
  return run.tui > 0 ? 'tui' : 'web';
}

/** A Markdown table (a `|` inside a cell becomes ` / `). */
export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.map((cell) => cell.replaceAll('|', ' / ')).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
