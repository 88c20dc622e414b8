/** A timestamp in ms from seconds, ms, µs or an ISO string, for "which is newer" comparisons. */
export function toMillis(value: unknown): number | undefined {
  if (typeof value === 'string') {
    // A numeric string is a number of seconds/ms/µs, never a date for Date.parse to guess a year from.
    if (/^-?[0-9]+(\.[0-9]+)?$/.test(value.trim())) return toMillis(Number(value));
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) || parsed <= 0 ? undefined : parsed;
  }
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return undefined;
  if (value < 1e11) return value * 1000;
  if (value > 1e14) return value / 1000;
  return value;
}
