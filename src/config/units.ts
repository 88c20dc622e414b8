/** Durations (`100ms`, `30s`, `10m`, `2h`, `30d`) and sizes (`64KiB`, `1 MiB`, or a byte count): patterns and parsers. */
import { ConfigError } from './errors.ts';

export const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h|d)$';
export const SIZE_PATTERN = '^[0-9]+ ?(B|KiB|MiB|GiB)$';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Milliseconds, rounded to a whole one. */
export function parseDuration(text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$/.exec(text);
  if (!match) throw new ConfigError(`not a duration: ${JSON.stringify(text)}`);
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2]]);
}

const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
/** Bytes; a number is already a byte count. */
export function parseSize(value: number | string): number {
  if (typeof value === 'number') return value;
  const match = /^([0-9]+) ?(B|KiB|MiB|GiB)$/.exec(value);
  if (!match) throw new ConfigError(`not a size: ${JSON.stringify(value)}`);
  return Number(match[1]) * SIZE_UNITS[match[2]];
}
