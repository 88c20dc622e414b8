/**
 * Lets one log line per key through per window, counting what it held back, so a repeating bad input
 * cannot flood the journal.
 */
export class LogThrottle {
  private readonly windowMs: number;
  private readonly now: () => number;
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(windowMs = 1000, now: () => number = Date.now) {
    this.windowMs = windowMs;
    this.now = now;
  }

  /** Returns undefined to hold the line back, or how many lines of this key were held back since the last one. */
  allow(key: string): number | undefined {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.windowMs) {
      entry.suppressed++;
      return undefined;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.last.set(key, { at: now, suppressed: 0 });
    return suppressed;
  }
}
