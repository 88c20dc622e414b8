/** A fixed window per user; the map holds at most `maxUsers`, oldest windows dropped first. */
export class UserRateLimit {
  private readonly windows = new Map<string, { start: number; count: number }>();
  private readonly max: number;
  private readonly window: number;
  private readonly maxUsers: number;

  constructor(max: number, window: number, maxUsers: number) {
    this.max = max;
    this.window = window;
    this.maxUsers = maxUsers;
  }

  get size(): number {
    return this.windows.size;
  }

  /** Takes one action from `user`'s window; false when the window is used up. */
  take(user: string, now: number): boolean {
    const current = this.windows.get(user);
    if (current !== undefined && now - current.start < this.window) {
      if (current.count >= this.max) return false;
      current.count++;
      return true;
    }
    // A new window goes to the end of the map, so the map stays in order of window start: the first entries
    // are the oldest, and the sweep stops at the first one still running (unless the map is full).
    this.windows.delete(user);
    for (const [key, entry] of this.windows) {
      if (now - entry.start < this.window && this.windows.size < this.maxUsers) break;
      this.windows.delete(key);
    }
    this.windows.set(user, { start: now, count: 1 });
    return true;
  }
}
