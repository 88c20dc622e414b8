import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { withTimeout } from '../redis-connection.ts';

/**
 * Takes the lease if nobody holds it, or takes it back if it still names this replica (a renewal that timed out here
 * but reached Redis); the term is the fleet's count of takeovers, one more. Otherwise answers who holds it, for how
 * much longer (ms), and the count: what a replica that does not lead shows.
 */
const ACQUIRE = `
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ARGV[1], tonumber(ARGV[2]), redis.call('INCR', KEYS[2])}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, ARGV[1], tonumber(ARGV[2]), redis.call('INCR', KEYS[2])}
end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1]), tonumber(redis.call('GET', KEYS[2]) or '0')}`;
/** Extends the lease only while this replica still holds it: 1, or 0 if it was lost (expired, taken). */
const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
/** Gives the lease up, if still held by this replica. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** What `system.leader` and /debug show. */
export interface LeaderInfo {
  /** The replica holding the lease (this one or another), or null when none does (or Redis cannot tell). */
  holder: string | null;
  is_leader: boolean;
  /** Milliseconds since the holder last took or renewed the lease, as last seen; null without a holder. */
  lease_age: number | null;
  /** Times a replica of the fleet took the lease since the key was created (Redis `<key>:takeovers`). */
  takeovers: number;
}

export interface LeaseOptions {
  /** A connection of its own: commands on it must fail at once when Redis is away (no offline queue). */
  redis: Redis;
  /** The lease's key; `<key>:takeovers` counts the terms. */
  key: string;
  /** This replica's id, the lease's value. */
  holder: string;
  /** ms the lease lasts unrenewed */
  lease: number;
  now?: () => number;
  logger: {
    info(object: object, message: string): void;
    warn(object: object, message: string): void;
  };
}

/**
 * A lease in Redis (`SET key id NX PX lease`) held by at most one replica. The holder renews it every third of the
 * lease; a renewal that fails or is refused ends the leadership at once, well before the key expires (at most
 * two thirds of the lease after the last renewal), so two replicas never lead at the same time while clocks run
 * at the same rate. A replica that does not lead tries again when the lease should expire, so a dead leader is
 * replaced within a lease of its last renewal. Emits `change` (isLeader) and `info` (after every observation).
 */
export class LeaderLease extends EventEmitter {
  readonly holder: string;
  isLeader = false;
  /** This replica led when `stop()` was called (its last rows are still its to write). */
  ledAtStop = false;
  /** The fleet's term of the current leadership of this replica (0 when not leading). */
  term = 0;
  private readonly options: LeaseOptions;
  private readonly now: () => number;
  private readonly step: number;
  private current: string | null = null;
  /** When the holder's lease was last taken or renewed, on this replica's clock. */
  private renewedAt: number | undefined;
  private takeovers = 0;
  /**
   * No reply from Redis for a whole lease: nobody can be relaying polls to this replica, so it polls for its own
   * clients (and writes nothing else). Emits `isolated` on each change.
   */
  isolated = false;
  /** When Redis last answered a lease command (or the start). */
  private answeredAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private ticking = false;
  /** A poke came while a try was under way: that try's own next step must not push it back. */
  private poked = false;

  constructor(options: LeaseOptions) {
    super();
    this.options = options;
    this.holder = options.holder;
    this.now = options.now ?? Date.now;
    this.step = Math.max(50, Math.floor(options.lease / 3));
  }

  get info(): LeaderInfo {
    return {
      holder: this.current,
      is_leader: this.isLeader,
      lease_age: this.current === null || this.renewedAt === undefined ? null : this.now() - this.renewedAt,
      takeovers: this.takeovers,
    };
  }

  start(): void {
    this.running = true;
    this.answeredAt = this.now();
    this.schedule(0);
  }

  /** Tries at once (another replica released the lease, Redis came back). */
  poke(): void {
    if (!this.running || this.isLeader) return;
    if (this.ticking) this.poked = true;
    else this.schedule(0);
  }

  /** Stops leading now without touching Redis: the connection is lost or stalled. */
  lost(reason: string): void {
    if (!this.isLeader) return;
    this.stepDown(reason);
    this.current = null;
    this.renewedAt = undefined;
    this.emit('info', this.info);
    this.schedule(this.step);
  }

  /** Stops; a leader gives the lease up so another replica takes over without waiting for it to expire. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.ledAtStop = this.isLeader;
    if (!this.isLeader) return;
    this.stepDown('stopping');
    await this.bounded(this.options.redis.eval(RELEASE, 1, this.options.key, this.holder)).catch(() => {});
  }

  private schedule(delay: number): void {
    clearTimeout(this.timer);
    if (!this.running) return;
    this.timer = setTimeout(() => void this.tick(), delay);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.ticking || !this.running) return;
    this.ticking = true;
    try {
      if (this.isLeader) await this.renew();
      else await this.acquire();
    } finally {
      this.ticking = false;
      // E.g. the connection turned ready while a first try failed on it (no offline queue): try again now.
      if (this.poked) {
        this.poked = false;
        if (!this.isLeader) this.schedule(0);
      }
    }
  }

  private async renew(): Promise<void> {
    const { redis, key, lease } = this.options;
    let renewed: unknown;
    try {
      renewed = await this.bounded(redis.eval(RENEW, 1, key, this.holder, lease));
    } catch (error) {
      this.lost(`renewal failed: ${(error as Error).message}`);
      return;
    }
    this.answered();
    if (!this.isLeader) return;
    if (renewed !== 1) {
      this.lost('renewal refused: the lease expired or another replica holds it');
      return;
    }
    this.renewedAt = this.now();
    this.emit('info', this.info);
    this.schedule(this.step);
  }

  private async acquire(): Promise<void> {
    const { redis, key, lease } = this.options;
    let reply: [number, string, number, number];
    try {
      reply = (await this.bounded(
        redis.eval(ACQUIRE, 2, key, `${key}:takeovers`, this.holder, lease),
      )) as typeof reply;
    } catch {
      // Redis is away: nobody is known to lead; try again in a step.
      if (this.current !== null) {
        this.current = null;
        this.renewedAt = undefined;
        this.emit('info', this.info);
      }
      if (!this.isolated && this.now() - this.answeredAt >= this.options.lease) {
        this.isolated = true;
        this.options.logger.warn(
          { holder: this.holder, lease_ms: this.options.lease },
          'leader: no reply from Redis for a whole lease; this replica polls the backends for its own clients',
        );
        this.emit('isolated', true);
      }
      this.schedule(this.step);
      return;
    }
    this.answered();
    if (!this.running) return;
    const [taken, holder, ttl, takeovers] = reply;
    const now = this.now();
    this.takeovers = Number(takeovers);
    if (taken === 1) {
      this.isLeader = true;
      this.term = this.takeovers;
      this.current = this.holder;
      this.renewedAt = now;
      this.options.logger.info(
        { holder: this.holder, term: this.term, lease_ms: lease },
        'leader: this replica took the lease; it polls the backends and writes history',
      );
      this.emit('change', true);
      this.emit('info', this.info);
      this.schedule(this.step);
      return;
    }
    this.current = holder === '' ? null : holder;
    // A key without an expiry (PTTL -1) is not a lease this fleet set: shown as just renewed, never taken over.
    this.renewedAt = ttl >= 0 ? now - (lease - ttl) : now;
    this.emit('info', this.info);
    // Try again as the lease runs out (a dead leader's), or in a step if it is renewed meanwhile.
    this.schedule(ttl >= 0 ? Math.min(this.step, ttl + 5) : this.step);
  }

  private answered(): void {
    this.answeredAt = this.now();
    if (!this.isolated) return;
    this.isolated = false;
    this.options.logger.info({ holder: this.holder }, 'leader: Redis answers again');
    this.emit('isolated', false);
  }

  private stepDown(reason: string): void {
    this.isLeader = false;
    this.term = 0;
    this.options.logger.warn({ holder: this.holder, reason }, 'leader: this replica stopped leading');
    this.emit('change', false);
  }

  /** A command that takes longer than a step counts as failed: a renewal must not wait past the lease. */
  private bounded<T>(command: Promise<T>): Promise<T> {
    return withTimeout(command, this.step, `no reply within ${this.step}ms`);
  }
}
