import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { GrpcBackend, grpcOrder } from '../helpers/backends-grpc.ts';
import { freshPoll, section, sourceConfig } from '../helpers/backends-poller.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * The orders section is replaced by each GetOrders answer, through the same rules as every full list
 * (src/ingest/reconcile.ts): missing orders go, terminal ones stay for their retention, newer Redis
 * updates win, updates written while the poll was under way stay, and a full page removes nothing.
 */

const LIMIT = 4;
const RETENTION_MS = 2000;

let redis: TestRedis;
let publisher: Redis;
let backend: GrpcBackend;
let running: RunningApp;
let client: DashboardClient;

/** Sets what GetOrders answers from now on. */
function answer(orders: Record<string, unknown>[]): void {
  backend.handlers.GetOrders = () => ({ orders });
}

const orders = (data: JsonObject) => section(data, 'orders');
const stateOrder = (id: string) => running.app.state.get('orders', id) as JsonObject | undefined;

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  backend = await GrpcBackend.start({ GetOrders: () => ({ orders: [] }) });
  running = await startApp(redis.url, {
    backend_services: {
      // A generous timeout: one test's backend waits for a Redis update to land before it answers.
      order_execution: sourceConfig(backend.address, { limit: LIMIT, timeout: '3s' }),
    },
    ingest: { terminal_order_retention: `${RETENTION_MS}ms` },
  });
  await waitReady(running.app);
  client = await connectClient(running.url, { type: 'tui' });
  await client.subscribe(['orders']);
});

beforeEach(async () => {
  // Each test starts from an empty section: an empty complete answer removes every non-terminal order (the
  // one terminal order of these tests is swept before its test ends).
  answer([]);
  await freshPoll(running.app, 'order_execution');
  assert.deepEqual([...running.app.state.keys('orders')], []);
  await viewWhere(client, (d) => Object.keys(orders(d)).length === 0);
});

after(async () => {
  try {
    client?.close();
    await running?.close();
    backend?.close();
    publisher?.disconnect();
  } finally {
    await redis?.kill();
  }
});

describe('orders section replaced by GetOrders', () => {
  test('an order no longer returned disappears (null in the diff); a terminal one stays for its retention', async () => {
    answer([
      grpcOrder({ order_id: 'keep' }),
      grpcOrder({ order_id: 'gone' }),
      grpcOrder({ order_id: 'filled', state: 'FILLED', filled_quantity: 0.5 }),
    ]);
    await freshPoll(running.app, 'order_execution');
    await viewWhere(client, (d) => Object.keys(orders(d)).length === 3);

    answer([grpcOrder({ order_id: 'keep' })]);
    const removal = client.next(
      'diff_update',
      (m) => (m.changes.orders as JsonObject | undefined)?.gone === null,
    );
    await freshPoll(running.app, 'order_execution');
    const diff = await removal;
    assert.equal(
      (diff.changes.orders as JsonObject).filled,
      undefined,
      'the terminal order is not touched by the poll',
    );
    const data = await viewWhere(client, (d) => orders(d).gone === undefined);
    assert.deepEqual(Object.keys(orders(data)).sort(), ['filled', 'keep']);
    assert.equal((orders(data).filled as JsonObject).state, 'FILLED');
    assert.equal(stateOrder('gone'), undefined);

    // Once its retention has passed, the terminal order is swept (the backend no longer lists it).
    const swept = await viewWhere(client, (d) => orders(d).filled === undefined, RETENTION_MS + 3000);
    assert.deepEqual(Object.keys(orders(swept)), ['keep']);
  });

  test('an order updated through Redis with a newer updated_at is not overwritten by the poll', async () => {
    answer([grpcOrder({ order_id: 'raced', price: 100, updated_at: 1_700_000_000 })]);
    await freshPoll(running.app, 'order_execution');
    await viewWhere(client, (d) => (orders(d).raced as JsonObject | undefined)?.price === 100);

    // The order service's Redis update is newer (ms here, seconds from gRPC: compared as times).
    await publisher.publish(
      'orders:updates',
      JSON.stringify({
        order_id: 'raced',
        symbol: 'BTCUSDT',
        state: 'PARTIALLY_FILLED',
        price: 101,
        filled_quantity: 0.1,
        updated_at: 1_700_000_010_000,
      }),
    );
    await viewWhere(client, (d) => (orders(d).raced as JsonObject | undefined)?.price === 101);

    // The poll still sees the older version: it must not win.
    await freshPoll(running.app, 'order_execution');
    assert.equal(stateOrder('raced')?.price, 101);
    assert.equal(stateOrder('raced')?.state, 'PARTIALLY_FILLED');
    assert.equal(stateOrder('raced')?.updated_at, 1_700_000_010_000);

    // A poll with a newer version than the Redis one does win.
    answer([grpcOrder({ order_id: 'raced', price: 102, state: 'SUBMITTED', updated_at: 1_700_000_020 })]);
    await freshPoll(running.app, 'order_execution');
    assert.equal(stateOrder('raced')?.price, 102);
    assert.equal(stateOrder('raced')?.state, 'SUBMITTED');
  });

  test('an order written through Redis while the poll was under way is not removed by it', async () => {
    answer([grpcOrder({ order_id: 'old' })]);
    await freshPoll(running.app, 'order_execution');
    await viewWhere(client, (d) => orders(d).old !== undefined);

    // The backend answers only after a new order arrived through Redis; its answer does not list it.
    backend.handlers.GetOrders = async () => {
      await publisher.publish(
        'orders:updates',
        JSON.stringify({ order_id: 'fresh', symbol: 'ETHUSDT', state: 'NEW', price: 3000 }),
      );
      await viewWhere(client, (d) => orders(d).fresh !== undefined);
      return { orders: [grpcOrder({ order_id: 'old' })] };
    };
    await freshPoll(running.app, 'order_execution');
    assert.equal(stateOrder('fresh')?.symbol, 'ETHUSDT', 'written after the poll began: kept');
    assert.ok(stateOrder('old'));

    // The next poll began after that write: now the order is taken as gone.
    answer([grpcOrder({ order_id: 'old' })]);
    await freshPoll(running.app, 'order_execution');
    assert.equal(stateOrder('fresh'), undefined);
    await viewWhere(client, (d) => orders(d).fresh === undefined);
  });

  test('a full page (as many orders as `limit`) removes nothing; the next complete list does', async () => {
    answer([grpcOrder({ order_id: 'a' }), grpcOrder({ order_id: 'b' })]);
    await freshPoll(running.app, 'order_execution');
    assert.ok(stateOrder('a') && stateOrder('b'));

    const page = Array.from({ length: LIMIT }, (_, i) => grpcOrder({ order_id: `p${i}` }));
    answer(page);
    await freshPoll(running.app, 'order_execution');
    assert.deepEqual(
      [...running.app.state.keys('orders')].sort(),
      ['a', 'b', 'p0', 'p1', 'p2', 'p3'],
      'a page cut short by the limit is no proof the others are gone',
    );
    assert.equal(running.app.poller.sources.get('order_execution')!.status.status, 'ok');

    answer(page.slice(0, LIMIT - 1));
    await freshPoll(running.app, 'order_execution');
    assert.deepEqual([...running.app.state.keys('orders')].sort(), ['p0', 'p1', 'p2']);
    await viewWhere(client, (d) => Object.keys(orders(d)).sort().join() === 'p0,p1,p2');
  });
});
