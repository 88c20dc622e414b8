import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, openSocket, viewWhere, type WatchedSocket } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, nowSeconds, SECRET_OTHER, signToken } from '../helpers/tokens.ts';

/**
 * Default auth.topic_roles: a viewer reads market_data, orderbook, trades, strategies and system; a trader and
 * an admin read everything; any other role reads nothing. Over the socket and over REST alike.
 */

const VIEWER_TOPICS = ['market_data', 'orderbook', 'trades', 'strategies', 'system'];

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;
let trader: DashboardClient;

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  running = await startApp(redis.url, {
    auth: authOn(),
    websocket: { connect_rate_limit: { max: 1000, window: '1m' } },
    broadcast: { tui_interval: '20ms', web_interval: '50ms' },
  });
  await waitReady(running.app);
  // Private data in the state: an order, a position and the account.
  trader = await connectClient(running.url, {
    type: 'tui',
    token: signToken({ userId: 'tina', role: 'trader' }),
  });
  await trader.subscribe(['market_data', 'orders', 'positions', 'account']);
  await publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: 64000 }));
  await publisher.publish('orders:all', JSON.stringify({ order_id: 'o1', symbol: 'BTCUSDT', state: 'NEW' }));
  await publisher.publish('positions:all', JSON.stringify({ symbol: 'BTCUSDT', quantity: 2 }));
  await publisher.publish('account:main', JSON.stringify({ total_balance: 1000, balances: { USDT: 1000 } }));
  await viewWhere(
    trader,
    (d) =>
      (d.orders as JsonObject).o1 !== undefined &&
      (d.positions as JsonObject).BTCUSDT !== undefined &&
      d.account !== undefined &&
      (d.market_data as JsonObject).BTCUSDT !== undefined,
  );
});

after(async () => {
  trader?.close();
  publisher?.disconnect();
  await running?.close();
  await redis.kill();
});

async function viewer(userId = 'vera'): Promise<WatchedSocket> {
  return openSocket(running.url, {
    token: signToken({ userId, email: `${userId}@example.com` }),
    query: 'type=tui',
  });
}

describe('subscriptions over the socket', () => {
  test('a viewer is refused orders, account and positions, whole, and its set is unchanged', async () => {
    const socket = await viewer();
    const first = await socket.request(
      { action: 'subscribe', subscriptions: ['market_data'] },
      'subscribed',
      'error',
    );
    assert.deepEqual(first.subscriptions, ['market_data']);
    const attempts: unknown[] = [
      { action: 'subscribe', subscriptions: ['orders'] },
      { action: 'subscribe', subscriptions: ['account'] },
      { action: 'subscribe', subscriptions: ['positions'] },
      // A permitted name beside a forbidden one: nothing is added.
      { action: 'subscribe', subscriptions: ['trades', 'orders'] },
      { action: 'subscribe', subscriptions: ['orderbook:ETHUSDT', 'account'] },
      // The web UI's form of the same request.
      { type: 'subscribe', channels: ['account'] },
    ];
    for (const attempt of attempts) {
      const reply = await socket.request(attempt, 'subscribed', 'error');
      assert.equal(reply.type, 'error', JSON.stringify(attempt));
      assert.equal(reply.code, 'forbidden_topic', JSON.stringify(attempt));
      assert.deepEqual(await socket.subscriptions(), ['market_data'], `after ${JSON.stringify(attempt)}`);
    }
    // Symbol-scoped names of a readable topic are fine.
    const scoped = await socket.request(
      { action: 'subscribe', subscriptions: ['trades:BTCUSDT'] },
      'subscribed',
      'error',
    );
    assert.deepEqual([...(scoped.subscriptions as string[])].sort(), ['market_data', 'trades:BTCUSDT']);
    await socket.close();
  });

  test('a viewer never receives private topics, in snapshots or in diffs', async () => {
    const socket = await viewer('vic');
    const from = socket.messages.length;
    socket.send({ action: 'subscribe', subscriptions: ['orders'] });
    socket.send({ action: 'subscribe', subscriptions: ['market_data', 'system'] });
    const snapshot = await socket.next((m) => m.type === 'state_update', from);
    assert.deepEqual(Object.keys(snapshot.data as object).sort(), ['market_data', 'system']);
    // Private updates, then a public mark: once the mark arrives, any private diff would have too.
    await publisher.publish(
      'orders:all',
      JSON.stringify({ order_id: 'o2', symbol: 'ETHUSDT', state: 'NEW' }),
    );
    await publisher.publish('account:main', JSON.stringify({ total_balance: 2000 }));
    await publisher.publish('market_data:MARK', JSON.stringify({ last_price: 1 }));
    await socket.next((m) => m.type === 'diff_update' && JSON.stringify(m.changes).includes('MARK'), from);
    const seen = JSON.stringify(socket.messages.slice(from));
    for (const secret of ['"orders"', '"account"', '"positions"', 'o2', 'total_balance']) {
      assert.ok(!seen.includes(secret), `the viewer saw ${secret}: ${seen}`);
    }
    await socket.close();
  });

  test('a trader may subscribe to orders and account and receives them', async () => {
    const socket = await openSocket(running.url, { token: signToken({ user_id: 'tom', role: 'trader' }) });
    const from = socket.messages.length;
    const reply = await socket.request(
      { action: 'subscribe', subscriptions: ['orders', 'account'] },
      'subscribed',
      'error',
    );
    assert.equal(reply.type, 'subscribed');
    const snapshot = await socket.next((m) => m.type === 'state_update', from);
    const data = snapshot.data as { orders: JsonObject; account: JsonObject };
    assert.ok(data.orders.o1, 'the order is in the snapshot');
    assert.equal((data.account as { total_balance: number }).total_balance >= 1000, true);
    await socket.close();
  });

  test('a role topic_roles does not list reads nothing', async () => {
    const socket = await openSocket(running.url, { token: signToken({ userId: 'ian', role: 'intern' }) });
    for (const name of ['market_data', 'system', 'orders']) {
      const reply = await socket.request(
        { action: 'subscribe', subscriptions: [name] },
        'subscribed',
        'error',
      );
      assert.equal(reply.code, 'forbidden_topic', name);
    }
    assert.deepEqual(await socket.subscriptions(), []);
    await socket.close();
  });
});

describe('GET /api/v1/state', () => {
  async function state(query: string, token?: string) {
    const response = await fetch(`${running.url}/api/v1/state${query}`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  test('without a token, or with a bad one: 401', async () => {
    const none = await state('');
    assert.equal(none.status, 401);
    assert.equal(none.body.error, 'missing_token');
    assert.equal(none.body.data, undefined);
    const forged = await state('', signToken({ userId: 'x', role: 'admin' }, SECRET_OTHER));
    assert.equal(forged.status, 401);
    assert.equal(forged.body.error, 'invalid_token');
    const expired = await state('', signToken({ userId: 'x', exp: nowSeconds() - 3600 }));
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error, 'token_expired');
    const orders = await state('?topics=orders');
    assert.equal(orders.status, 401);
  });

  test('a viewer gets only the topics it may read', async () => {
    const token = signToken({ userId: 'vera' });
    const all = await state('', token);
    assert.equal(all.status, 200);
    assert.deepEqual(Object.keys(all.body.data as object).sort(), [...VIEWER_TOPICS].sort());
    const text = JSON.stringify(all.body);
    assert.ok(!text.includes('o1') && !text.includes('total_balance'), text);
    // The token in the query works the same.
    const query = await state(`?token=${token}`);
    assert.deepEqual(Object.keys(query.body.data as object).sort(), [...VIEWER_TOPICS].sort());
  });

  test('a viewer asking for a private topic gets 403 forbidden_topic', async () => {
    const token = signToken({ userId: 'vera' });
    for (const topics of ['orders', 'account', 'market_data,positions', 'trades:BTCUSDT,account']) {
      const reply = await state(`?topics=${topics}`, token);
      assert.equal(reply.status, 403, topics);
      assert.equal(reply.body.error, 'forbidden_topic', topics);
      assert.equal(reply.body.data, undefined, topics);
    }
    const allowed = await state('?topics=market_data', token);
    assert.equal(allowed.status, 200);
    assert.deepEqual(Object.keys(allowed.body.data as object), ['market_data']);
  });

  test('a trader gets orders, positions and account', async () => {
    const token = signToken({ user_id: 'tom', role: 'trader' });
    const all = await state('', token);
    assert.equal(all.status, 200);
    const data = all.body.data as Record<string, JsonObject>;
    assert.ok(data.orders.o1);
    assert.ok(data.positions.BTCUSDT);
    assert.ok(data.account);
    const orders = await state('?topics=orders', token);
    assert.equal(orders.status, 200);
    assert.deepEqual(Object.keys(orders.body.data as object), ['orders']);
  });
});
