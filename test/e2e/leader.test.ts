import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { JsonObject } from '../../src/merge-patch.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { GrpcBackend, grpcOrder } from '../helpers/backends-grpc.ts';
import { accountBody, HttpBackend, json } from '../helpers/backends-http.ts';
import { freshPoll, source, sourceConfig, stateStatus } from '../helpers/backends-poller.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * Two replicas (two in-process apps) on one Redis, one leading (plugins/leader.ts): only the leader asks the
 * backends; the other applies what the leader relays on `<leader.key>:polls` (data and status), drops what is not
 * a valid relay, reads the kept copies after a gap, and takes over as soon as the leader stops. A lone replica cut
 * off from Redis polls for its own clients. Each app has its own api keys, so the stand-ins tell who asked.
 */

/**
 * The lease of the lone replica (isolated after it). Two apps in one process on 2 vCPUs share an event loop and a
 * Redis: a second app starting, or a 16 MB message making Redis busy for ~250 ms, delays a renewal past a 200 ms
 * step and the leader steps down and takes the lease again under a new term. The pairs run with a 3 s lease (1 s
 * step), so that who leads changes only when a test means it to; nothing they check waits for the lease to run out.
 */
const LEASE = 600;
const FLEET_LEASE = 3000;
const KEY = 'dashboard-server:leader';
const CHANNEL = `${KEY}:polls`;

/** Polls `read` until it gives a value (not undefined/false): another app's state has no event to await. */
async function until<T>(
  what: string,
  read: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function get(running: RunningApp, path: string): Promise<{ status: number; text: string }> {
  const response = await fetch(`${running.url}${path}`);
  return { status: response.status, text: await response.text() };
}

async function debugLeader(running: RunningApp): Promise<JsonObject & { relay: JsonObject }> {
  const { status, text } = await get(running, '/debug');
  assert.equal(status, 200);
  const body = JSON.parse(text) as { pid: number; leader: JsonObject & { relay: JsonObject } };
  assert.equal(body.pid, process.pid);
  return body.leader;
}

/** The value of an unlabelled (or exactly labelled) sample of /metrics. */
async function metric(running: RunningApp, sample: string): Promise<number> {
  const { status, text } = await get(running, '/metrics');
  assert.equal(status, 200);
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  assert.ok(line, `${sample} is in /metrics`);
  return Number(line.slice(sample.length + 1));
}

const received = (running: RunningApp) => ({ ...running.app.leader.debug().relay.received });
const balanceOf = (running: RunningApp) =>
  ((running.app.state.get('account') as JsonObject | undefined)?.balances as JsonObject | undefined)?.USDT;

/** An account-monitor answer whose USDT balance is `total`, newer than any before it. */
function accountWith(total: number): Record<string, unknown> {
  const usdt = String(total);
  return accountBody({
    balances: { USDT: { asset: 'USDT', free: usdt, locked: '0', total: usdt, usd_value: usdt } },
    timestamp: new Date().toISOString(),
  });
}

function envelope(fields: Record<string, unknown>): string {
  return JSON.stringify({ v: 1, holder: 'fake-holder', source: 'account_monitor', kind: 'data', ...fields });
}

describe('two replicas on one Redis', () => {
  let redis: TestRedis;
  let admin: Redis;
  let account: HttpBackend;
  let orders: GrpcBackend;
  let a: RunningApp;
  let b: RunningApp;
  let aClosed = false;
  /** `dashboard_leader` of A's /metrics while A ran alone (the metrics registry is the process's: see below). */
  let aLeaderMetric: number;

  const hitsBy = (key: string) => account.requests.filter((r) => r.headers['x-api-key'] === key).length;
  const callsBy = (key: string) =>
    orders.calls.filter((c) => String(c.metadata.authorization?.[0]) === `Bearer ${key}`).length;
  const config = (name: string) => ({
    leader: { lease: `${FLEET_LEASE}ms` },
    backend_services: {
      account_monitor: sourceConfig(account.url, {
        interval: '300ms',
        timeout: '250ms',
        api_key: `account-${name}`,
      }),
      // Polled as a replica starts leading (and once more by the test), then hourly: one answer to relay.
      order_execution: sourceConfig(orders.address, { api_key: `orders-${name}`, timeout: '3s' }),
    },
  });

  before(async () => {
    redis = await TestRedis.start();
    admin = redis.client();
    account = await HttpBackend.start({ '/api/account': json(accountWith(1000)) });
    orders = await GrpcBackend.start({ GetOrders: () => ({ orders: [grpcOrder({ order_id: 'o-1' })] }) });
    a = await startApp(redis.url, config('a'));
    await waitReady(a.app);
    if (!a.app.leader.isLeader)
      await once(a.app.leader.events, 'change', { signal: AbortSignal.timeout(5000) });
    assert.equal(a.app.leader.isLeader, true, 'A, alone, leads');
    // A first gRPC call on a loaded machine can be slow: one poll now, awaited, so an order is there to relay.
    await freshPoll(a.app, 'order_execution');
    // prom-client's registry is global to the process: the app started last owns /metrics. Read A's now.
    aLeaderMetric = await metric(a, 'dashboard_leader');
    b = await startApp(redis.url, config('b'));
    await waitReady(b.app);
    await until('B sees A hold the lease', () => b.app.leader.info().holder === a.app.leader.self);
  });

  after(async () => {
    try {
      admin?.disconnect();
      if (!aClosed) await a?.close();
      await b?.close();
      await account?.close();
      orders?.close();
    } finally {
      await redis?.kill();
    }
  });

  test('only the leader asks the backends; the follower shows the answers it relays', async () => {
    const fromA = hitsBy('account-a');
    await until('A polls account-monitor three more times', () => hitsBy('account-a') >= fromA + 3);
    await until('A asked order-execution', () => callsBy('orders-a') >= 1);
    assert.equal(hitsBy('account-b'), 0, 'B never asked account-monitor');
    assert.equal(callsBy('orders-b'), 0, 'B never asked order-execution');
    assert.equal(source(b.app, 'account_monitor').running, false, "B's sources are paused");
    assert.equal(source(a.app, 'account_monitor').running, true);

    // What A polled reaches B: the first answers, then a change.
    await until('B has the order A polled', () => b.app.state.get('orders', 'o-1') !== undefined);
    await until('B has the first account', () => balanceOf(b) === 1000);
    account.routes['/api/account'] = json(accountWith(2000));
    await until('B has the changed account', () => balanceOf(b) === 2000);
    assert.equal(balanceOf(a), 2000);
    const positions = b.app.state.get('positions', 'BTCUSDT') as JsonObject | undefined;
    assert.equal(
      positions?.side,
      'SHORT',
      'the positions of the answer too, parsed as the leader parses them',
    );
    const { status, text } = await get(b, '/api/v1/state?topics=account');
    assert.equal(status, 200);
    assert.equal(((JSON.parse(text).data.account as JsonObject).balances as JsonObject).USDT, 2000);

    const counts = received(b);
    assert.ok(counts.applied >= 2, `B applied relayed polls: ${JSON.stringify(counts)}`);
    assert.equal(counts.invalid, 0);
    assert.equal(hitsBy('account-b'), 0);
  });

  test("the follower's source status mirrors the leader's, failing and recovering", async () => {
    account.routes['/api/account'] = json({ error: 'boom' }, 500);
    const failing = await until('B shows account_monitor failing', () => {
      const status = stateStatus(b.app, 'account_monitor');
      return status && status.status !== 'ok' && typeof status.last_error === 'string' && status;
    });
    assert.match(String(failing.last_error), /500/);
    assert.ok(failing.stale_since, 'stale since the first failure');
    // B holds what A holds (the next status may come meanwhile: compare until they agree).
    await until('B and A agree on the status', () => {
      const mine = stateStatus(b.app, 'account_monitor');
      const leaders = stateStatus(a.app, 'account_monitor');
      return JSON.stringify(mine) === JSON.stringify(leaders);
    });
    assert.notEqual(source(b.app, 'account_monitor').status.status, 'ok', "B's source (/debug) adopted it");
    assert.equal(hitsBy('account-b'), 0, 'B still asks nothing while the backend fails');
    assert.equal(balanceOf(b), 2000, 'the last known account stays');

    account.routes['/api/account'] = json(accountWith(3000));
    await until(
      'B shows account_monitor ok again',
      () => stateStatus(b.app, 'account_monitor')?.status === 'ok',
    );
    await until('B has the account after recovery', () => balanceOf(b) === 3000);
  });

  test('/debug, system.leader and /metrics show the lease on each replica', async () => {
    const self = a.app.leader.self;
    const leading = await debugLeader(a);
    assert.equal(leading.self, self);
    assert.equal(leading.holder, self);
    assert.equal(leading.is_leader, true);
    assert.equal(leading.isolated, false);
    assert.equal(leading.term, 1);
    assert.equal(leading.takeovers, 1);
    assert.ok(Number(leading.relay.published) > 0, 'A relayed its polls');
    assert.equal(aLeaderMetric, 1, 'A alone: dashboard_leader 1');

    const following = await debugLeader(b);
    assert.equal(following.self, b.app.leader.self);
    assert.notEqual(following.self, self);
    assert.equal(following.holder, self);
    assert.equal(following.is_leader, false);
    assert.equal(following.isolated, false);
    assert.equal(following.term, 0);
    assert.equal(following.takeovers, 1);
    assert.ok(
      typeof following.lease_age === 'number' && following.lease_age <= FLEET_LEASE,
      `${following.lease_age}`,
    );
    assert.ok(Number((following.relay.received as JsonObject).applied) > 0);

    const system = b.app.state.get('system') as JsonObject;
    const leader = system.leader as JsonObject;
    assert.equal(leader.holder, self);
    assert.equal(leader.is_leader, false);
    assert.equal(leader.takeovers, 1);

    assert.equal(await metric(b, 'dashboard_leader'), 0);
    assert.equal(await metric(b, 'dashboard_leader_isolated'), 0);
    assert.equal(await metric(b, 'dashboard_leader_takeovers'), 1);
    assert.ok((await metric(b, 'dashboard_leader_relay_received_total{outcome="applied"}')) > 0);
  });

  test('what is not a valid relay is counted invalid, changes nothing and leaves the relay working', async () => {
    const before = received(b);
    const accountBefore = b.app.state.get('account');
    const publishes: (string | Buffer)[] = [
      'not json',
      '[1,2,3]',
      '{"__proto__": {"v": 1, "term": 1, "seq": 1}}',
      envelope({ v: 2, term: 1, seq: 1, started_at: Date.now(), answers: [{}] }),
      envelope({ term: 1, seq: 1, source: 'payments', started_at: Date.now(), answers: [{}] }),
      envelope({ term: 1, seq: 1, source: 'constructor', started_at: Date.now(), answers: [{}] }),
      envelope({ term: 1, seq: 1, started_at: Date.now(), answers: [] }),
      envelope({ term: 1, seq: 1, kind: 'status', status: { status: 'great', breaker: 'closed' } }),
      Buffer.alloc(16 * 1024 * 1024 + 1, 0x20),
    ];
    for (const payload of publishes) await admin.publish(CHANNEL, payload);
    await until(
      'B counted every one invalid',
      () => received(b).invalid >= before.invalid + publishes.length,
    );
    assert.equal(received(b).invalid, before.invalid + publishes.length);
    assert.equal(received(b).resync, before.resync, 'nothing invalid made B read the copies');
    assert.deepEqual(b.app.state.get('account'), accountBefore);
    assert.equal(({} as JsonObject).v, undefined, 'Object.prototype untouched');

    // Valid envelopes of the current term whose answers are hostile: refused by the parsers and ingest.
    const order = grpcOrder({ order_id: 'o-evil' });
    const copy = JSON.parse(
      (await admin.hget(`${KEY}:sections`, 'data:order_execution')) ?? '{}',
    ) as JsonObject;
    assert.equal(copy.term, 1, "the copy of A's order_execution poll is kept");
    const hostileOrders = [
      // A `__proto__` key inside a record, and a number JSON cannot hold (1e400 → Infinity).
      `{"orders": [${JSON.stringify(order).replace('{', '{"__proto__": {"x": 1}, ')}]}`,
      `{"orders": [${JSON.stringify({ ...order, quantity: 0 }).replace('"quantity":0', '"quantity":1e400')}]}`,
      '{"orders": [{"__proto__": {"x": 1}}]}',
    ];
    // Numbered after A's kept copy of that field, within A's term: they reach the order_execution parser.
    let seq = Number(copy.seq);
    for (const answer of hostileOrders) {
      const text = envelope({
        term: 1,
        seq: ++seq,
        source: 'order_execution',
        started_at: Date.now(),
        answers: ['ANSWER'],
      }).replace('"ANSWER"', answer);
      await admin.publish(CHANNEL, text);
    }
    await until('B counted the hostile answers invalid', () => {
      const now = received(b);
      return (
        now.invalid + now.stale >= before.invalid + before.stale + publishes.length + hostileOrders.length &&
        now
      );
    });
    assert.equal(received(b).invalid, before.invalid + publishes.length + hostileOrders.length);
    assert.deepEqual([...b.app.state.keys('orders')], ['o-1'], 'no hostile order reached the state');
    assert.equal(({} as JsonObject).x, undefined, 'Object.prototype untouched');

    // B goes on serving and applying A's relays.
    assert.equal((await get(b, '/health')).status, 200);
    account.routes['/api/account'] = json(accountWith(4000));
    await until('B still applies what A relays', () => balanceOf(b) === 4000);
    assert.equal(hitsBy('account-b'), 0);
  });

  // Last before the takeover: from here on B takes term 1000 for the newest and drops A's (term 1) as deposed.
  test('a gap in the relay (a newer term starting past 1) makes the follower read the kept copies', async () => {
    const before = received(b);
    const term = 1000;
    await admin.publish(
      CHANNEL,
      envelope({ term, seq: 5, started_at: Date.now(), answers: [accountWith(5000)] }),
    );
    await until('B read the copies', () => received(b).resync > before.resync);
    await until('B applied the envelope after the gap', () => balanceOf(b) === 5000);
    assert.ok(received(b).applied > before.applied);
    // The same term going on in order: no other read.
    const resyncs = received(b).resync;
    const hostile = envelope({ term, seq: 6, started_at: Date.now(), answers: ['ANSWER'] }).replace(
      '"ANSWER"',
      '{"pnl": {}, "balances": {"USDT": {"total": 1e400, "usd_value": "1"}}, "positions": {}}',
    );
    await admin.publish(CHANNEL, hostile);
    await until('B counted the hostile account invalid', () => received(b).invalid > before.invalid);
    assert.equal(received(b).resync, resyncs, 'seq 6 after seq 5: no gap');
    assert.equal(balanceOf(b), 5000, 'the hostile answer changed nothing');

    // A backend B does not poll (no strategy_engine here): nothing applied, counted stale, not invalid.
    const { applied, stale, invalid } = received(b);
    await admin.publish(
      CHANNEL,
      envelope({ term, seq: 7, source: 'strategy_engine', started_at: Date.now(), answers: [{}, {}] }),
    );
    await until('B counted the unconfigured source stale', () => received(b).stale > stale);
    assert.equal(received(b).applied, applied);
    assert.equal(received(b).invalid, invalid);
    assert.equal(b.app.state.get('strategies'), undefined);
  });

  test('closing the leader: the follower takes over at once and polls; it applies nothing of its own', async () => {
    const released = admin.duplicate();
    await released.subscribe(`${KEY}:released`);
    try {
      const message = once(released, 'message', { signal: AbortSignal.timeout(5000) });
      const leads = once(b.app.leader.events, 'change', { signal: AbortSignal.timeout(5000) });
      account.routes['/api/account'] = json(accountWith(6000));
      const started = Date.now();
      aClosed = true;
      await a.close();
      const [isLeader] = await leads;
      const elapsed = Date.now() - started;
      assert.equal(isLeader, true);
      // Told by A's release, not by its own next try (a step, 1 s, later) nor the lease running out (3 s).
      assert.ok(elapsed < 500, `B leads ${elapsed} ms after A began closing (lease ${FLEET_LEASE} ms)`);
      assert.deepEqual((await message).slice(1), [a.app.leader.self], 'A announced its release');
    } finally {
      released.disconnect();
    }
    assert.equal(await admin.get(KEY), b.app.leader.self);
    assert.equal(b.app.leader.debug().term, 2);

    const counts = received(b);
    const published = b.app.leader.debug().relay.published;
    await until('B polls account-monitor itself', () => hitsBy('account-b') >= 3, 5000);
    await until('B polls order-execution itself', () => callsBy('orders-b') >= 1, 5000);
    await until('B relays its polls', () => b.app.leader.debug().relay.published >= published + 3);
    await until("B's account comes from its own polls", () => balanceOf(b) === 6000);
    assert.deepEqual(received(b), counts, 'B took none of its own relays');
    assert.equal(await metric(b, 'dashboard_leader'), 1);
    assert.equal(await metric(b, 'dashboard_leader_takeovers'), 2);
    const leader = (b.app.state.get('system') as JsonObject).leader as JsonObject;
    assert.equal(leader.is_leader, true);
    assert.equal(leader.holder, b.app.leader.self);
  });
});

describe('two replicas after Redis lost its keys (a restart without persistence)', () => {
  let redis: TestRedis;
  let admin: Redis;
  let account: HttpBackend;
  let a: RunningApp;
  let b: RunningApp;

  before(async () => {
    redis = await TestRedis.start();
    admin = redis.client();
    account = await HttpBackend.start({ '/api/account': json(accountWith(1000)) });
    const config = {
      leader: { lease: `${FLEET_LEASE}ms` },
      backend_services: {
        account_monitor: sourceConfig(account.url, { interval: '300ms', timeout: '250ms' }),
      },
    };
    a = await startApp(redis.url, config);
    await waitReady(a.app);
    await until('A leads', () => a.app.leader.isLeader);
    b = await startApp(redis.url, config);
    await waitReady(b.app);
    await until('B sees A hold the lease', () => b.app.leader.info().holder === a.app.leader.self);
  });

  after(async () => {
    try {
      admin?.disconnect();
      await a?.close();
      await b?.close();
      await account?.close();
    } finally {
      await redis?.kill();
    }
  });

  /** Makes the leader's next renewal fail and gives the lease to `next` (its next try takes it back: a new term). */
  async function handOver(from: RunningApp, next: RunningApp): Promise<void> {
    const stepped = once(from.app.leader.events, 'change', { signal: AbortSignal.timeout(5000) });
    await admin.set(KEY, 'handing-over', 'PX', FLEET_LEASE);
    assert.deepEqual(await stepped, [false]);
    const leads = once(next.app.leader.events, 'change', { signal: AbortSignal.timeout(5000) });
    await admin.set(KEY, next.app.leader.self, 'PX', FLEET_LEASE);
    assert.deepEqual(await leads, [true]);
  }

  // Redis restarted without persistence (or FLUSHALL, eviction, a failover to a lagging replica) resets the count of
  // takeovers: the holder's lower term is taken as a new start, not as a deposed leader's (RelayOrder.accept).
  test("a follower that saw a later term applies the new leader's relays once the takeover count restarted", async () => {
    // Term 2: B leads, A follows and applies B's relays (its newest term seen is 2).
    await handOver(a, b);
    assert.equal(b.app.leader.debug().term, 2);
    account.routes['/api/account'] = json(accountWith(2000));
    await until('A applies what B relays in term 2', () => balanceOf(a) === 2000);

    // Redis restarts empty (every key gone, the takeover count included); B takes the lease again: term 1.
    await admin.flushall();
    await handOver(b, b);
    assert.equal(b.app.leader.debug().term, 1, 'the count of takeovers started again');
    account.routes['/api/account'] = json(accountWith(3000));
    await until('B polled the new answer', () => balanceOf(b) === 3000);
    await until('A applies what B relays in its new term', () => balanceOf(a) === 3000, 3000).catch(
      (error: Error) => {
        throw new Error(`${error.message}; A's relay counts: ${JSON.stringify(received(a))}`);
      },
    );
  });
});

describe('a lone replica whose Redis dies', () => {
  let redis: TestRedis;
  let account: HttpBackend;
  let c: RunningApp;

  before(async () => {
    redis = await TestRedis.start();
    account = await HttpBackend.start({ '/api/account': json(accountWith(1000)) });
    c = await startApp(redis.url, {
      leader: { lease: `${LEASE}ms` },
      backend_services: {
        account_monitor: sourceConfig(account.url, { interval: '300ms', timeout: '250ms' }),
      },
    });
    await waitReady(c.app);
  });

  after(async () => {
    try {
      await c?.close();
      await account?.close();
    } finally {
      await redis?.kill();
    }
  });

  test('stops polling as it loses the lease, polls again once isolated (about a lease later)', async () => {
    await until('C leads and polls', () => c.app.leader.isLeader && account.hits() >= 2);
    const stepped = once(c.app.leader.events, 'change', { signal: AbortSignal.timeout(5000) });
    const isolated = once(c.app.leader.events, 'isolated', { signal: AbortSignal.timeout(5000) });
    const started = Date.now();
    await redis.kill();
    assert.deepEqual(await stepped, [false], 'C stops leading as its connection closes');
    // No leader, not isolated yet: nobody relays, and C does not poll.
    assert.equal(source(c.app, 'account_monitor').running, false, 'C paused its polls');
    assert.deepEqual(await isolated, [true]);
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= LEASE - LEASE / 3 - 50, `isolated after about a lease (${elapsed} ms)`);
    assert.equal(c.app.leader.isolated, true);
    assert.equal(source(c.app, 'account_monitor').running, true, 'C polls again');

    const since = account.hits();
    await account.nextRequest('/api/account', 3000);
    await until('the polls go on while Redis is down', () => account.hits() >= since + 3);
    assert.equal(c.app.leader.isLeader, false);
    assert.equal(await metric(c, 'dashboard_leader_isolated'), 1);
    assert.equal(await metric(c, 'dashboard_leader'), 0);
    account.routes['/api/account'] = json(accountWith(7000));
    await until("C applies its own polls to its clients' state", () => balanceOf(c) === 7000);
  });
});
