/**
 * What every Redis connection of the hub shares (the ingest subscriber and reader, the leader's lease and relay, the
 * fleet's user slots), and a bound on one command's wait. Each plugin creates and closes its own connections.
 */
import type { RedisOptions } from 'ioredis';
import type { Config } from './config/schema.ts';

/**
 * `redis.db`, a connection made on `connect()` (in `onReady`), and reconnection forever with a capped backoff: the hub
 * serves its last known state meanwhile. `extra` names the connection and sets how its commands wait.
 */
export function redisOptions(config: Config['redis'], extra: RedisOptions): RedisOptions {
  return {
    db: config.db,
    lazyConnect: true,
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    ...extra,
  };
}

/**
 * `command`, failed with `message` if it has not answered within `ms`. Decided after one more I/O poll: after a long
 * blocked turn the timer and the reply are both due, and timers run first; a reply already read is no timeout. The
 * command's own failure after the timeout never surfaces as an unhandled rejection.
 */
export function withTimeout<T>(command: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => setImmediate(() => reject(new Error(message))), ms);
  });
  command.catch(() => {});
  return Promise.race([command, timeout]).finally(() => clearTimeout(timer));
}
