/** Orders in a terminal state stay visible for ingest.terminal_order_retention, then go. */

export const TERMINAL_ORDER_STATES = new Set(['FILLED', 'CANCELED', 'CANCELLED', 'REJECTED', 'EXPIRED']);

export class TerminalOrders {
  /** Terminal orders by id, with the time they may be removed at; insertion order is expiry order. */
  private readonly expiries = new Map<string, number>();
  private readonly retention: number;
  private readonly now: () => number;

  constructor(retention: number, now: () => number) {
    this.retention = retention;
    this.now = now;
  }

  /** Records that order `id` is now in `state` (upper case): a terminal one expires after the retention. */
  update(id: string, state: string): void {
    this.expiries.delete(id);
    if (TERMINAL_ORDER_STATES.has(state)) this.expiries.set(id, this.now() + this.retention);
  }

  /** Whether order `id` is terminal and within its retention (a poll that lacks it does not remove it). */
  has(id: string): boolean {
    return this.expiries.has(id);
  }

  /** Forgets and returns the orders whose retention has passed, the oldest first. */
  takeExpired(): string[] {
    const now = this.now();
    const expired: string[] = [];
    for (const [id, expiresAt] of this.expiries) {
      if (expiresAt > now) break;
      this.expiries.delete(id);
      expired.push(id);
    }
    return expired;
  }
}
