/**
 * Which of two versions of an order is the later, whichever source each came from; and orders in a terminal state
 * stay visible for ingest.terminal_order_retention, then go.
 */
import type { Json, JsonObject } from '../merge-patch.ts';
import { toMillis } from './timestamps.ts';

export const TERMINAL_ORDER_STATES = new Set(['FILLED', 'CANCELED', 'CANCELLED', 'REJECTED', 'EXPIRED']);

/** An order's lifecycle: NEW < SUBMITTED < PARTIALLY_FILLED < terminal; it never goes back. */
const STATE_RANK: Record<string, number> = {
  NEW: 0,
  PENDING: 0,
  SUBMITTED: 1,
  PARTIALLY_FILLED: 2,
};
function rank(state: Json | undefined): number {
  const name = String(state ?? '').toUpperCase();
  return TERMINAL_ORDER_STATES.has(name) ? 3 : (STATE_RANK[name] ?? 0);
}

/**
 * Whether two times are the same instant as far as both sources can tell: the poll's gRPC orders carry Unix
 * seconds, the NATS updates of the same service milliseconds (or finer), so a whole second matches any time within
 * that second.
 */
function sameInstant(a: number, b: number): boolean {
  if (a === b) return true;
  if (a % 1000 === 0 || b % 1000 === 0) return Math.floor(a / 1000) === Math.floor(b / 1000);
  return false;
}

/**
 * Whether `incoming` is older than the order the state holds (`current`), and so must not overwrite it: by
 * `updated_at` when both carry distinct times, else by lifecycle state, else by filled quantity. An equal one is
 * not older (the later message wins).
 */
export function isStaleOrder(current: Json | undefined, incoming: JsonObject): boolean {
  if (current === undefined || current === null || typeof current !== 'object' || Array.isArray(current))
    return false;
  const currentTime = toMillis(current.updated_at);
  const incomingTime = toMillis(incoming.updated_at);
  if (currentTime !== undefined && incomingTime !== undefined && !sameInstant(currentTime, incomingTime))
    return currentTime > incomingTime;
  const currentRank = rank(current.state);
  const incomingRank = rank(incoming.state);
  if (currentRank !== incomingRank) return currentRank > incomingRank;
  const filled = (order: JsonObject) =>
    typeof order.filled_quantity === 'number' ? order.filled_quantity : 0;
  return filled(current) > filled(incoming);
}

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
