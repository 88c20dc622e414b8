import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { type LeaderInfo, LeaderLease } from '../../src/leader/lease.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';

/**
 * The lease (src/leader/lease.ts) against a real Redis: at most one replica leads, a released or dead lease is
 * taken over in time, a refused or slow renewal ends the leadership at once, a replica Redis does not answer is
 * isolated, and a key this fleet did not set is left alone. Each replica is wired to its connection the way
 * plugins/leader.ts wires it (`close` → lost, `ready` → poke).
 */

const LEASE = 600;
/** The lease's renewal period (a third of it). */
const STEP = LEASE / 3;
/** Room for a loaded machine on every "within" bound. */
const SLACK = 300;

const silent = { info() {}, warn() {} };

interface Replica {
  lease: LeaderLease;
  redis: Redis;
  /** Every `change` the lease emitted, in order. */
  changes: boolean[];
}

let redis: TestRedis;
let admin: Redis;
const replicas: Replica[] = [];
let keys = 0;

before(async () => {
  redis = await TestRedis.start();
  admin = redis.client();
});

after(async () => {
  try {
    for (const { lease, redis: connection } of replicas) {
      await lease.stop();
      connection.disconnect();
    }
    admin?.disconnect();
  } finally {
    await redis?.kill();
  }
});

/** A key of its own for each test. */
const newKey = () => `lease-test-${++keys}`;

/** A replica's lease on `key`, connected like plugins/leader.ts connects it; started unless told otherwise. */
async function replica(url: string, key: string, holder: string, { start = true } = {}): Promise<Replica> {
  const connection = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: true,
    retryStrategy: () => 100,
  });
  connection.on('error', () => {});
  const lease = new LeaderLease({ redis: connection, key, holder, lease: LEASE, logger: silent });
  connection.on('close', () => lease.lost('connection to Redis lost'));
  connection.on('ready', () => lease.poke());
  const changes: boolean[] = [];
  lease.on('change', (isLeader: boolean) => changes.push(isLeader));
  const made = { lease, redis: connection, changes };
  replicas.push(made);
  await connection.connect().catch(() => {});
  if (start) lease.start();
  return made;
}

/** The next `name` event of `emitter` whose first argument passes `accept`, within `timeoutMs`. */
async function next<T>(
  emitter: EventEmitter,
  name: string,
  accept: (value: T) => boolean = () => true,
  timeoutMs = 5000,
): Promise<T> {
  const signal = AbortSignal.timeout(timeoutMs);
  for (;;) {
    let value: T;
    try {
      [value] = (await once(emitter, name, { signal })) as [T];
    } catch (error) {
      if (signal.aborted) throw new Error(`no matching '${name}' event within ${timeoutMs} ms`);
      throw error;
    }
    if (accept(value)) return value;
  }
}

/** The first `change` to `isLeader` among `leases`: which one, and when. */
function firstChange(leases: LeaderLease[], isLeader: boolean, timeoutMs = 5000): Promise<LeaderLease> {
  const hub = new EventEmitter();
  const listeners = leases.map((lease) => {
    const listener = (value: boolean) => {
      if (value === isLeader) hub.emit('found', lease);
    };
    lease.on('change', listener);
    return () => lease.off('change', listener);
  });
  return next<LeaderLease>(hub, 'found', () => true, timeoutMs).finally(() => {
    for (const off of listeners) off();
  });
}

/** A leads `key`; then B is started and has seen A hold it. */
async function leaderAndFollower(key: string): Promise<[Replica, Replica]> {
  const a = await replica(redis.url, key, 'replica-a', { start: false });
  const leads = next<boolean>(a.lease, 'change', (v) => v);
  a.lease.start();
  await leads;
  const b = await replica(redis.url, key, 'replica-b', { start: false });
  const seen = next<LeaderInfo>(b.lease, 'info', (info) => info.holder === 'replica-a');
  b.lease.start();
  await seen;
  return [a, b];
}

describe('LeaderLease on a real Redis', () => {
  test('two replicas started together: exactly one leads (term 1), the other sees who and since when', async () => {
    const key = newKey();
    const a = await replica(redis.url, key, 'replica-a', { start: false });
    const b = await replica(redis.url, key, 'replica-b', { start: false });
    const observed = Promise.all([next(a.lease, 'info'), next(b.lease, 'info')]);
    a.lease.start();
    b.lease.start();
    await observed;

    const leading = [a, b].filter((r) => r.lease.isLeader);
    assert.equal(leading.length, 1, 'exactly one of two leads');
    const [leader] = leading;
    const follower = leader === a ? b : a;
    assert.equal(leader.lease.term, 1);
    assert.equal(follower.lease.term, 0);
    assert.equal(await admin.get(key), leader.lease.holder, 'the key names the leader');
    assert.equal(await admin.get(`${key}:takeovers`), '1');
    assert.deepEqual(leader.lease.info, {
      holder: leader.lease.holder,
      is_leader: true,
      lease_age: leader.lease.info.lease_age,
      takeovers: 1,
    });
    const seen = follower.lease.info;
    assert.equal(seen.holder, leader.lease.holder, "the follower shows the leader's id");
    assert.equal(seen.is_leader, false);
    assert.equal(seen.takeovers, 1);
    assert.ok(seen.lease_age !== null && seen.lease_age >= 0 && seen.lease_age <= LEASE, `${seen.lease_age}`);

    // Two leases later: the leader kept renewing, the follower never took over, nobody changed side.
    const since = Date.now();
    let renewals = 0;
    let maxAge = 0;
    await next<LeaderInfo>(
      leader.lease,
      'info',
      () => ++renewals >= 3 && Date.now() - since > 2 * LEASE,
      10_000,
    );
    await next<LeaderInfo>(follower.lease, 'info', (info) => {
      maxAge = Math.max(maxAge, info.lease_age ?? Infinity);
      return info.holder === leader.lease.holder;
    });
    assert.deepEqual(leader.changes, [true]);
    assert.deepEqual(follower.changes, []);
    assert.equal(await admin.get(`${key}:takeovers`), '1', 'no takeover while the leader renews');
    assert.ok(maxAge <= LEASE, `the follower sees a lease renewed within a lease (age ${maxAge} ms)`);
    assert.ok((await admin.pttl(key)) > LEASE - STEP - SLACK, 'the key is kept alive by the renewals');
  });

  test('stop() releases the lease: the other replica takes it well within a lease', async () => {
    const key = newKey();
    const [a, b] = await leaderAndFollower(key);
    const taken = next<boolean>(b.lease, 'change', (v) => v);
    const started = Date.now();
    await a.lease.stop();
    assert.deepEqual(a.changes, [true, false], 'the leader stops leading as it stops');
    assert.notEqual(await admin.get(key), 'replica-a', 'the key no longer names the stopped leader');
    await taken;
    const elapsed = Date.now() - started;
    assert.ok(elapsed < LEASE, `taken over ${elapsed} ms after the release (lease ${LEASE} ms)`);
    assert.equal(b.lease.term, 2);
    assert.equal(await admin.get(key), 'replica-b');
    assert.equal(await admin.get(`${key}:takeovers`), '2');
  });

  test('a leader whose connection drops stops at once; the other takes over when its lease runs out', async () => {
    const key = newKey();
    const [a, b] = await leaderAndFollower(key);
    const stepped = next<boolean>(a.lease, 'change', (v) => !v);
    const taken = next<boolean>(b.lease, 'change', (v) => v);
    const started = Date.now();
    a.redis.disconnect(); // no stop(): the lease is left in Redis as a crashed process leaves it
    await stepped;
    assert.ok(Date.now() - started < STEP, 'the leader stops leading as soon as its connection closes');
    assert.equal(a.lease.isLeader, false);
    assert.equal(a.lease.info.holder, null, 'a replica that cannot ask does not know who leads');
    await taken;
    const elapsed = Date.now() - started;
    // Not before the dead leader's lease ran out (renewed at most a step before), and soon after it did.
    assert.ok(elapsed >= LEASE - STEP - 50, `not taken while the lease still ran (${elapsed} ms)`);
    assert.ok(elapsed <= LEASE + STEP + SLACK, `taken over ${elapsed} ms after the leader died`);
    assert.equal(await admin.get(key), 'replica-b');
    assert.equal(b.lease.term, 2);
    assert.deepEqual(b.changes, [true]);
  });

  test('a renewal refused (another holder in the key) ends the leadership at the next renewal', async () => {
    const key = newKey();
    const [a, b] = await leaderAndFollower(key);
    const stepped = next<boolean>(a.lease, 'change', (v) => !v);
    const started = Date.now();
    await admin.set(key, 'intruder', 'PX', 10 * LEASE);
    await stepped;
    const elapsed = Date.now() - started;
    assert.ok(elapsed <= STEP + SLACK, `stepped down ${elapsed} ms after the key changed hands`);
    // Both now show the intruder as the holder, and neither takes its lease.
    await Promise.all(
      [a, b].map((r) => next<LeaderInfo>(r.lease, 'info', (info) => info.holder === 'intruder')),
    );
    assert.equal(a.lease.isLeader || b.lease.isLeader, false);
    assert.equal(await admin.get(key), 'intruder');
  });

  test('the key deleted under the leader: its renewal is refused, it steps down, a replica takes the lease again', async () => {
    const key = newKey();
    const [a, b] = await leaderAndFollower(key);
    const stepped = next<boolean>(a.lease, 'change', (v) => !v);
    const retaken = firstChange([a.lease, b.lease], true);
    const started = Date.now();
    await admin.del(key);
    await stepped;
    assert.ok(Date.now() - started <= STEP + SLACK, 'the old leader stepped down at its next renewal');
    const leader = await retaken;
    assert.ok(Date.now() - started <= 2 * STEP + SLACK, 'a replica took the free lease at its next try');
    // Settled: the key names the one that leads, and it is the second takeover.
    await next<LeaderInfo>(a.lease, 'info', (info) => info.holder === leader.holder);
    await next<LeaderInfo>(b.lease, 'info', (info) => info.holder === leader.holder);
    assert.deepEqual(
      [a, b].filter((r) => r.lease.isLeader).map((r) => r.lease.holder),
      [leader.holder],
    );
    assert.equal(await admin.get(key), leader.holder);
    assert.equal(await admin.get(`${key}:takeovers`), '2');
    assert.equal(leader.term, 2);
  });

  test('a renewal slower than a step counts as failed: the leader steps down rather than wait', async () => {
    const key = newKey();
    const [a, b] = await leaderAndFollower(key);
    const stepped = next<boolean>(a.lease, 'change', (v) => !v);
    const relead = firstChange([a.lease, b.lease], true);
    const started = Date.now();
    // Redis holds every write (the renewal script included) for longer than a step, then answers.
    await admin.call('CLIENT', 'PAUSE', String(STEP * 2 + 100), 'WRITE');
    await stepped;
    const elapsed = Date.now() - started;
    assert.ok(elapsed <= 2 * STEP + SLACK, `stepped down ${elapsed} ms into the stall`);
    // Redis answers again: a replica leads again, one only.
    const leader = await relead;
    await next<LeaderInfo>(
      leader === a.lease ? b.lease : a.lease,
      'info',
      (info) => info.holder === leader.holder,
    );
    assert.equal([a, b].filter((r) => r.lease.isLeader).length, 1);
    assert.equal(await admin.get(key), leader.holder);
  });

  test('a key set without an expiry by someone else is never taken over', async () => {
    const key = newKey();
    await admin.set(key, 'foo');
    const a = await replica(redis.url, key, 'replica-a', { start: false });
    const seen = next<LeaderInfo>(a.lease, 'info');
    const started = Date.now();
    a.lease.start();
    assert.deepEqual(await seen, { holder: 'foo', is_leader: false, lease_age: 0, takeovers: 0 });
    // Over two leases of tries, the replica keeps seeing foo as the holder, its lease fresh, and never leads.
    await next<LeaderInfo>(
      a.lease,
      'info',
      (info) => {
        assert.equal(info.holder, 'foo');
        assert.equal(info.is_leader, false);
        assert.ok(info.lease_age !== null && info.lease_age <= STEP, `lease_age ${info.lease_age}`);
        return Date.now() - started > 2 * LEASE;
      },
      10_000,
    );
    assert.deepEqual(a.changes, []);
    assert.equal(await admin.get(key), 'foo');
    assert.equal(await admin.pttl(key), -1);
    assert.equal(await admin.exists(`${key}:takeovers`), 0);
  });
});

describe('LeaderLease without Redis', () => {
  test('a replica that never reaches Redis is isolated once a whole lease passed', async () => {
    const closed = `redis://127.0.0.1:${await freePort()}`;
    const a = await replica(closed, newKey(), 'replica-a', { start: false });
    const isolated = next<boolean>(a.lease, 'isolated');
    const started = Date.now();
    a.lease.start();
    assert.equal(await isolated, true);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= LEASE, `not isolated before a lease (${elapsed} ms)`);
    assert.ok(elapsed <= LEASE + STEP + SLACK, `isolated ${elapsed} ms after starting`);
    assert.equal(a.lease.isolated, true);
    assert.deepEqual(a.lease.info, { holder: null, is_leader: false, lease_age: null, takeovers: 0 });
    assert.deepEqual(a.changes, []);
  });

  test('a leader whose Redis dies steps down at once, is isolated after a lease, and leads again when Redis is back', async () => {
    const own = await TestRedis.start();
    try {
      const a = await replica(own.url, newKey(), 'replica-a', { start: false });
      const leads = next<boolean>(a.lease, 'change', (v) => v);
      a.lease.start();
      await leads;

      const stepped = next<boolean>(a.lease, 'change', (v) => !v);
      const isolated = next<boolean>(a.lease, 'isolated', (v) => v);
      const started = Date.now();
      await own.kill();
      await stepped;
      assert.ok(Date.now() - started < STEP + SLACK, 'the leader steps down as the connection closes');
      assert.equal(a.lease.isolated, false, 'not isolated yet: its last answer is recent');
      await isolated;
      const elapsed = Date.now() - started;
      // The last answer came at most a step before the kill.
      assert.ok(elapsed >= LEASE - STEP - 50, `isolated only after about a lease (${elapsed} ms)`);
      assert.ok(elapsed <= LEASE + STEP + SLACK, `isolated ${elapsed} ms after Redis died`);
      assert.equal(a.lease.isolated, true);
      assert.equal(a.lease.info.holder, null);

      const back = next<boolean>(a.lease, 'isolated', (v) => !v, 10_000);
      const leadsAgain = next<boolean>(a.lease, 'change', (v) => v, 10_000);
      await own.restart();
      assert.equal(await back, false);
      await leadsAgain;
      assert.equal(a.lease.isolated, false);
      assert.equal(a.lease.isLeader, true, 'alone on an empty Redis, it takes the lease again');
      assert.deepEqual(a.changes, [true, false, true]);
    } finally {
      await own.kill();
    }
  });
});
