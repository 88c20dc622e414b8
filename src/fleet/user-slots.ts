import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { withTimeout } from '../redis-connection.ts';

/**
 * How long a slot lives in Redis without a refresh. Every replica refreshes its own slots every third of it, so a
 * live replica's slots survive two missed refreshes, and a dead replica's (crashed, killed, cut off from Redis) stop
 * counting at most this long after its last refresh.
 */
export const USER_SLOT_TTL_MS = 30_000;
/** How long an acquire or release may take before Redis counts as unavailable: the upgrade waits this at most. */
export const USER_SLOT_TIMEOUT_MS = 500;
/** Users' keys refreshed per pipeline: bounds one write to Redis whatever the number of connected users. */
const REFRESH_BATCH_KEYS = 200;

/**
 * Drops the expired members, then adds ARGV[1] unless the user is at ARGV[2]: 1 admitted, 0 refused. A member
 * already there (the same upgrade, tried again) is refreshed, not refused. Expiries are Redis's clock (TIME), so
 * the replicas' clocks never matter.
 */
const ACQUIRE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1`;
/** Pushes the expiry of this replica's members ARGV[2..] to now + ARGV[1] (re-adding any purged meanwhile). */
const REFRESH = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1`;

/** A user id written into a key as it is: common ids (numbers, UUIDs, e-mail addresses) stay readable in Redis. */
const PLAIN_USER_ID = /^[A-Za-z0-9_.@-]{1,64}$/;

/**
 * The Redis key of a user's slots: `<prefix>:clients:<user>`. A user id is any string a token's `sub` carries, so
 * one that is long or holds anything but `[A-Za-z0-9_.@-]` is written as `#` and its SHA-256 (base64url): a key is
 * never longer than the prefix plus 74 characters, and never holds `:`, `*`, spaces or control characters from a
 * token. `#` is not among the plain characters, so the two forms never collide.
 */
export function userSlotKey(prefix: string, userId: string): string {
  const encoded = PLAIN_USER_ID.test(userId)
    ? userId
    : `#${createHash('sha256').update(userId).digest('base64url')}`;
  return `${prefix}:clients:${encoded}`;
}

/** How an acquire ended: admitted (a slot is held), refused (the user is at the limit), unavailable (no answer). */
export type SlotOutcome = 'admitted' | 'refused' | 'unavailable';

export interface UserSlotStats {
  /** Slots this replica holds (admitted, or held while Redis was unavailable), kept alive by the refresh. */
  held: number;
  admitted: number;
  refused: number;
  /** Acquires Redis did not answer within the timeout, or failed: the caller decides alone. */
  unavailable: number;
  released: number;
  /** Releases Redis did not take: the slot ages out with the ttl instead. */
  releaseFailed: number;
  /** Refresh rounds done, and those that failed in whole or part (retried at the next round). */
  refreshes: number;
  refreshFailed: number;
}

export interface FleetUserSlotsOptions {
  /** A connection of its own: commands on it should fail at once when Redis is away (no offline queue). */
  redis: Redis;
  /** The fleet's key prefix (`leader.key`); the users' keys are `<prefix>:clients:<user>`. */
  prefix: string;
  /** This replica's id: every member is `<replica>:<client>`. Unique among the live replicas of the fleet. */
  replica: string;
  /** ms a slot lives without a refresh (USER_SLOT_TTL_MS); refreshed every third of it. */
  ttl?: number;
  /** ms an acquire or release may take (USER_SLOT_TIMEOUT_MS). */
  timeout?: number;
  /** A refresh round failed (Redis away): the round is retried at the next one. */
  onRefreshFailed?: (error: Error) => void;
}

interface Slot {
  key: string;
  /** Released while its acquire was still waiting for Redis: removed again once that answers. */
  released: boolean;
}

/**
 * Connection slots per user shared by every replica of a fleet, in Redis: one sorted set per user whose members
 * are `<replica>:<client>`, scored by when they expire (Redis time, ms). An acquire drops the expired members and
 * adds one unless the user is at the limit, in one script, so simultaneous acquires on any replicas never pass it
 * together. Each replica refreshes the members it holds; a replica that dies stops refreshing, and its members stop
 * counting after the ttl.
 */
export class FleetUserSlots {
  readonly replica: string;
  readonly ttl: number;
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly timeout: number;
  private readonly onRefreshFailed: (error: Error) => void;
  /** Members held (admitted or held unanswered), by member. */
  private readonly held = new Map<string, string>();
  /** Members whose acquire waits for Redis. */
  private readonly pending = new Map<string, Slot>();
  private readonly counts = {
    admitted: 0,
    refused: 0,
    unavailable: 0,
    released: 0,
    releaseFailed: 0,
    refreshes: 0,
    refreshFailed: 0,
  };
  private timer: NodeJS.Timeout | undefined;
  private refreshing = false;
  /** Why Redis last failed an acquire, a release or a refresh. */
  lastError: string | undefined;

  constructor(options: FleetUserSlotsOptions) {
    this.redis = options.redis;
    this.prefix = options.prefix;
    this.replica = options.replica;
    this.ttl = options.ttl ?? USER_SLOT_TTL_MS;
    this.timeout = options.timeout ?? USER_SLOT_TIMEOUT_MS;
    this.onRefreshFailed = options.onRefreshFailed ?? (() => {});
  }

  get stats(): UserSlotStats {
    return { held: this.held.size, ...this.counts };
  }

  /** The member of one client of this replica. */
  memberOf(client: string | number): string {
    return `${this.replica}:${client}`;
  }

  /**
   * Takes one of `limit` slots of `userId` for `client` (an id unique on this replica). On `unavailable` the slot
   * is held all the same: the caller admits the connection on its own limit, and the refresh writes it to Redis
   * once Redis answers, so the fleet counts it from then on. Either way `release` must follow unless `refused`.
   */
  async acquire(userId: string, client: string | number, limit: number): Promise<SlotOutcome> {
    const key = userSlotKey(this.prefix, userId);
    const member = this.memberOf(client);
    const slot: Slot = { key, released: false };
    this.pending.set(member, slot);
    let outcome: SlotOutcome;
    try {
      const reply = await this.bounded(this.redis.eval(ACQUIRE, 1, key, member, limit, this.ttl));
      outcome = reply === 1 ? 'admitted' : 'refused';
    } catch (error) {
      outcome = 'unavailable';
      this.lastError = (error as Error).message;
    } finally {
      this.pending.delete(member);
    }
    this.counts[outcome]++;
    if (outcome === 'refused') return outcome;
    // Released while the acquire was waiting: the member it may have added goes again. The ZREM is sent after the
    // script on the same connection, so Redis runs it after, even when the script's reply came too late.
    if (slot.released) void this.remove(key, member);
    else this.held.set(member, key);
    return outcome;
  }

  /** Gives back the slot of `client` (admitted, unanswered or still waiting); never throws. */
  async release(client: string | number): Promise<void> {
    const member = this.memberOf(client);
    const waiting = this.pending.get(member);
    if (waiting) {
      waiting.released = true;
      return;
    }
    const key = this.held.get(member);
    if (key === undefined) return;
    this.held.delete(member);
    this.counts.released++;
    await this.remove(key, member);
  }

  /** Refreshes every third of the ttl until `stop`. */
  start(): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.refresh(), Math.max(10, Math.floor(this.ttl / 3)));
    this.timer.unref();
  }

  /** Stops refreshing and gives back every slot still held (bounded by the timeout); never throws. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const byKey = this.heldByKey();
    this.held.clear();
    if (byKey.size === 0) return;
    const pipeline = this.redis.pipeline();
    for (const [key, members] of byKey) pipeline.zrem(key, ...members);
    try {
      await this.bounded(pipeline.exec());
    } catch {
      // They age out with the ttl.
    }
  }

  /**
   * Pushes the expiry of every member held to Redis's now + ttl, in pipelines of REFRESH_BATCH_KEYS users. A
   * member purged meanwhile by another replica (this one could not refresh for a ttl) is added again: its
   * connection is open. Resolves once done; a failure is counted and reported, and the next round tries again.
   */
  async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    let failure: Error | undefined;
    try {
      const keys = [...this.heldByKey().keys()];
      for (let start = 0; start < keys.length; start += REFRESH_BATCH_KEYS) {
        // Built from what is held now: a member released while an earlier batch was in flight is left out.
        const batch = this.heldByKey(new Set(keys.slice(start, start + REFRESH_BATCH_KEYS)));
        if (batch.size === 0) continue;
        const pipeline = this.redis.pipeline();
        for (const [key, members] of batch) pipeline.eval(REFRESH, 1, key, this.ttl, ...members);
        try {
          const replies = await this.bounded(pipeline.exec(), this.ttl / 3);
          const failed = replies?.find(([error]) => error)?.[0];
          if (failed) failure ??= failed;
        } catch (error) {
          failure ??= error as Error;
          // Redis is away: the other batches would fail alike.
          break;
        }
      }
    } finally {
      this.refreshing = false;
    }
    this.counts.refreshes++;
    if (failure) {
      this.counts.refreshFailed++;
      this.lastError = failure.message;
      this.onRefreshFailed(failure);
    }
  }

  /** Members held, grouped by their user's key (only the keys in `only`, when given). */
  private heldByKey(only?: ReadonlySet<string>): Map<string, string[]> {
    const byKey = new Map<string, string[]>();
    for (const [member, key] of this.held) {
      if (only && !only.has(key)) continue;
      const members = byKey.get(key);
      if (members) members.push(member);
      else byKey.set(key, [member]);
    }
    return byKey;
  }

  private async remove(key: string, member: string): Promise<void> {
    try {
      await this.bounded(this.redis.zrem(key, member));
    } catch (error) {
      this.counts.releaseFailed++;
      this.lastError = (error as Error).message;
    }
  }

  /** A command that takes longer than `ms` counts as failed (its reply, if one comes, is ignored). */
  private bounded<T>(command: Promise<T>, ms = this.timeout): Promise<T> {
    return withTimeout(command, ms, `redis: no reply within ${ms}ms`);
  }
}
