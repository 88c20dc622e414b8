import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { FleetUserSlots, type FleetUserSlotsOptions, userSlotKey } from '../../src/fleet/user-slots.ts';
import { TestRedis } from '../helpers/redis.ts';

/** The connection slots of each user across a fleet's replicas, against a real Redis. */

const PREFIX = 'test-fleet';
let redis: TestRedis;
/** The test's own view of Redis. */
let probe: Redis;
const connections: Redis[] = [];

before(async () => {
  redis = await TestRedis.start();
  probe = redis.client();
});

after(async () => {
  for (const connection of connections) connection.disconnect();
  probe.disconnect();
  await redis.kill();
});

/** A connection as the plugin opens it: no offline queue, so a command fails at once while Redis is away. */
async function connection(server = redis): Promise<Redis> {
  const client = new Redis(server.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => 50,
  });
  client.on('error', () => {});
  connections.push(client);
  await client.connect();
  return client;
}

/** A replica's slots; `replica` names it in the members. */
async function replica(name: string, options: Partial<FleetUserSlotsOptions> = {}): Promise<FleetUserSlots> {
  return new FleetUserSlots({ redis: await connection(), prefix: PREFIX, replica: name, ...options });
}

const members = (userId: string) => probe.zrange(userSlotKey(PREFIX, userId), 0, '-1');

/** Redis's clock in ms (the one the expiries are written in). */
async function redisNow(): Promise<number> {
  const [seconds, micros] = await probe.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/** Polls Redis until `check` holds (every 20 ms, within 5 s). */
async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('acquire and release', () => {
  test('up to the limit across replicas, then refused; a release frees one; users are apart', async () => {
    const a = await replica('a');
    const b = await replica('b');
    assert.equal(await a.acquire('ann', 1, 3), 'admitted');
    assert.equal(await b.acquire('ann', 1, 3), 'admitted');
    assert.equal(await a.acquire('ann', 2, 3), 'admitted');
    assert.equal(await b.acquire('ann', 2, 3), 'refused');
    assert.equal(await a.acquire('ann', 3, 3), 'refused');
    assert.deepEqual((await members('ann')).sort(), ['a:1', 'a:2', 'b:1']);
    // Another user has slots of their own.
    assert.equal(await b.acquire('bob', 3, 3), 'admitted');
    await a.release(1);
    assert.deepEqual((await members('ann')).sort(), ['a:2', 'b:1']);
    assert.equal(await b.acquire('ann', 4, 3), 'admitted');
    // Releasing twice, or what was never held, changes nothing.
    await a.release(1);
    await a.release(99);
    assert.equal((await members('ann')).length, 3);
    assert.deepEqual(a.stats, {
      held: 1,
      admitted: 2,
      refused: 1,
      unavailable: 0,
      released: 1,
      releaseFailed: 0,
      refreshes: 0,
      refreshFailed: 0,
    });
    assert.equal(b.stats.held, 3);
    // Each slot expires on Redis's clock within the ttl, and so does the key.
    const now = await redisNow();
    for (const member of await members('ann')) {
      const expiry = Number(await probe.zscore(userSlotKey(PREFIX, 'ann'), member));
      assert.ok(expiry > now && expiry <= now + a.ttl + 50, `${member} expires at ${expiry - now}ms`);
    }
    const keyTtl = await probe.pttl(userSlotKey(PREFIX, 'ann'));
    assert.ok(keyTtl > 0 && keyTtl <= a.ttl, `key ttl ${keyTtl}`);
    await a.stop();
    await b.stop();
    assert.deepEqual(await members('ann'), [], 'stop gives back every slot held');
  });

  test('simultaneous acquires on two replicas never pass the limit together', async () => {
    const a = await replica('a');
    const b = await replica('b');
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).acquire('crowd', i, 3)),
    );
    assert.equal(outcomes.filter((outcome) => outcome === 'admitted').length, 3);
    assert.equal(outcomes.filter((outcome) => outcome === 'refused').length, 17);
    assert.equal((await members('crowd')).length, 3);
    await a.stop();
    await b.stop();
  });

  test('released while the acquire waits for Redis: the slot it took goes again', async () => {
    const a = await replica('a');
    const acquired = a.acquire('hasty', 1, 3);
    await a.release(1);
    assert.equal(await acquired, 'admitted');
    assert.equal(a.stats.held, 0);
    await until('the late slot removed', async () => (await members('hasty')).length === 0);
  });
});

describe('a dead replica', () => {
  test("its slots stop counting after the ttl; a live replica's are refreshed", async () => {
    // ttl 300 ms: the dead replica is never started (as a process killed after its acquires: no refresh).
    const dead = await replica('dead', { ttl: 300 });
    const live = await replica('live', { ttl: 300 });
    assert.equal(await dead.acquire('ghost', 1, 2), 'admitted');
    assert.equal(await live.acquire('ghost', 1, 2), 'admitted');
    live.start();
    assert.equal(await live.acquire('ghost', 2, 2), 'refused');
    const key = userSlotKey(PREFIX, 'ghost');
    const deadExpiry = Number(await probe.zscore(key, 'dead:1'));
    const liveExpiry = Number(await probe.zscore(key, 'live:1'));
    // Past the dead slot's expiry, and past the live one's first expiry too, on Redis's clock.
    await until(
      'the first expiries passed',
      async () => (await redisNow()) > Math.max(deadExpiry, liveExpiry),
    );
    assert.equal(await live.acquire('ghost', 3, 2), 'admitted');
    assert.deepEqual((await members('ghost')).sort(), ['live:1', 'live:3']);
    assert.ok(live.stats.refreshes > 0);
    await live.stop();
  });

  test('refresh pushes the expiry of every slot held, in batches, and re-adds one purged meanwhile', async () => {
    const a = await replica('a', { ttl: 5000 });
    for (let user = 0; user < 450; user++) assert.equal(await a.acquire(`user-${user}`, user, 2), 'admitted');
    const key = userSlotKey(PREFIX, 'user-7');
    const before = Number(await probe.zscore(key, 'a:7'));
    // Purged by another replica while this one could not refresh (a stall longer than the ttl).
    await probe.zrem(userSlotKey(PREFIX, 'user-400'), 'a:400');
    await until('the clock moved', async () => (await redisNow()) > before - 5000 + 5);
    await a.refresh();
    assert.ok(Number(await probe.zscore(key, 'a:7')) > before);
    assert.deepEqual(await members('user-400'), ['a:400']);
    assert.deepEqual(await members('user-449'), ['a:449']);
    assert.equal(a.stats.refreshFailed, 0);
    await a.stop();
  });
});

describe('when Redis does not answer', () => {
  test('unavailable within the timeout; the slot is held, and written once Redis answers', async () => {
    const server = await TestRedis.start();
    try {
      const client = await connection(server);
      const failures: Error[] = [];
      const slots = new FleetUserSlots({
        redis: client,
        prefix: PREFIX,
        replica: 'r',
        timeout: 100,
        onRefreshFailed: (error) => failures.push(error),
      });
      // Frozen: the connection stays open, nothing answers.
      process.kill(server.pid!, 'SIGSTOP');
      const started = performance.now();
      assert.equal(await slots.acquire('frozen', 1, 1), 'unavailable');
      const waited = performance.now() - started;
      assert.ok(waited >= 90 && waited < 1000, `waited ${waited}ms`);
      assert.equal(slots.stats.held, 1);
      assert.match(slots.lastError ?? '', /no reply within 100ms/);
      process.kill(server.pid!, 'SIGCONT');
      // Gone: commands fail at once.
      await server.kill();
      assert.equal(await slots.acquire('gone', 2, 1), 'unavailable');
      await slots.refresh();
      assert.equal(slots.stats.refreshFailed, 1);
      assert.equal(failures.length, 1);
      await slots.release(1);
      assert.equal(slots.stats.held, 1);
      // Back (empty: no persistence): the refresh writes the slot held meanwhile.
      await server.restart();
      await until('reconnected', async () => client.status === 'ready');
      await slots.refresh();
      const other = new Redis(server.url);
      try {
        assert.deepEqual(await other.zrange(userSlotKey(PREFIX, 'gone'), 0, '-1'), ['r:2']);
        // So the fleet counts it: the user is at the limit.
        assert.equal(await slots.acquire('gone', 3, 1), 'refused');
      } finally {
        other.disconnect();
      }
      await slots.stop();
    } finally {
      await server.kill();
    }
  });
});

describe('keys', () => {
  test('a plain user id is readable; anything else is a bounded hash; never a collision between the two', () => {
    assert.equal(userSlotKey('p', 'u-1'), 'p:clients:u-1');
    assert.equal(userSlotKey('p', 'ann@example.com'), 'p:clients:ann@example.com');
    const hostile = [
      'x'.repeat(10 * 1024),
      'a:b',
      '*',
      'line\nbreak',
      'sp ace',
      '',
      '\u0000',
      'ünï',
      'y'.repeat(65),
    ];
    const keys = new Set<string>();
    for (const userId of hostile) {
      const key = userSlotKey('p', userId);
      assert.match(key, /^p:clients:#[A-Za-z0-9_-]{43}$/, JSON.stringify(userId.slice(0, 20)));
      keys.add(key);
    }
    assert.equal(keys.size, hostile.length);
    // A plain id that looks like a hashed one is not one ('#' is never plain).
    const hashed = userSlotKey('p', 'a:b').slice('p:clients:'.length);
    assert.notEqual(userSlotKey('p', hashed), userSlotKey('p', 'a:b'));
  });

  test('a hostile user id makes one bounded key in Redis', async () => {
    const a = await replica('a');
    const userId = `${'z'.repeat(10 * 1024)}:*\n`;
    assert.equal(await a.acquire(userId, 1, 1), 'admitted');
    assert.equal(await a.acquire(userId, 2, 1), 'refused');
    const keys = await probe.keys(`${PREFIX}:clients:#*`);
    assert.equal(keys.length, 1);
    assert.ok(keys[0].length <= PREFIX.length + 9 + 44);
    await a.stop();
  });
});
