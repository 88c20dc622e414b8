/** The latest time a Date can hold (ECMAScript: 8.64e15 ms after the epoch); a later one cannot be formatted. */
const LAST_DATE_MS = 8.64e15;

/**
 * A timestamp in ms from seconds, ms, µs or an ISO string, for "which is newer" comparisons; undefined for what is
 * no time (not a number or date, not after the epoch, or past the last date a client can format).
 */
export function toMillis(value: unknown): number | undefined {
  if (typeof value === 'string') {
    // A numeric string is a number of seconds/ms/µs, never a date for Date.parse to guess a year from.
    if (/^-?[0-9]+(\.[0-9]+)?$/.test(value.trim())) return toMillis(Number(value));
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) || parsed <= 0 ? undefined : parsed;
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return undefined;
  const ms = value < 1e11 ? value * 1000 : value > 1e14 ? value / 1000 : value;
  return ms > LAST_DATE_MS ? undefined : ms;
}
