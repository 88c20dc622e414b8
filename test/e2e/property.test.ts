import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { buildFilter, validateSubscription } from '../../src/topics.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * Random sequences of Redis updates and deletions, published through a real Redis to a real hub, with several
 * clients over real sockets holding different subscription sets, formats and cadences: after every batch,
 * each client's view (its snapshot plus every diff it applied) equals the server's snapshot of its set.
 */

const SYMBOLS = ['AAA', 'BBB', 'CCC'];
const MARK = 'market_data:MARK';

const SUBSCRIBERS: { subscriptions: string[]; type: 'tui' | 'web'; format: 'json' | 'msgpack' }[] = [
  {
    subscriptions: ['market_data', 'orderbook', 'trades', 'orders', 'positions', 'account'],
    type: 'tui',
    format: 'json',
  },
  { subscriptions: ['market_data', 'positions'], type: 'web', format: 'msgpack' },
  { subscriptions: ['market_data:AAA', 'orderbook:BBB', 'account', MARK], type: 'web', format: 'json' },
  { subscriptions: ['orders', 'positions', 'trades:AAA', MARK], type: 'tui', format: 'msgpack' },
];

const symbol = fc.constantFrom(...SYMBOLS);
const price = fc.integer({ min: 1, max: 1000 }).map((n) => n / 4);
const operation = fc.oneof(
  fc.record({
    channel: symbol.map((s) => `market_data:${s}`),
    payload: fc.record({ last_price: price, volume_24h: fc.option(price, { nil: undefined }) }),
  }),
  fc.record({
    channel: symbol.map((s) => `orderbook:${s}`),
    payload: fc.record({
      bids: fc.dictionary(price.map(String), fc.integer({ min: 0, max: 5 }), { maxKeys: 4 }),
      asks: fc.dictionary(price.map(String), fc.integer({ min: 0, max: 5 }), { maxKeys: 4 }),
    }),
  }),
  fc.record({
    channel: symbol.map((s) => `trades:${s}`),
    payload: fc.record({
      trade_id: fc.integer({ min: 1, max: 6 }),
      price,
      quantity: price,
      timestamp: fc.integer({ min: 1, max: 100 }),
    }),
  }),
  fc.record({
    channel: fc.constant('orders:all'),
    payload: fc.record({
      order_id: fc.constantFrom('o1', 'o2', 'o3'),
      symbol,
      state: fc.constantFrom('NEW', 'PARTIALLY_FILLED'),
      price: fc.option(price, { nil: undefined }),
      filled_quantity: price,
    }),
  }),
  // Quantity 0 deletes the position: deletions are as likely as updates.
  fc.record({
    channel: fc.constant('positions:all'),
    payload: fc.record({ symbol, quantity: fc.constantFrom(0, 1, 2.5) }),
  }),
  fc.record({
    channel: fc.constant('account:main'),
    payload: fc.record({
      total_balance: price,
      balances: fc.dictionary(fc.constantFrom('USDT', 'BTC', 'ETH'), price),
    }),
  }),
);

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;
const clients: DashboardClient[] = [];

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  running = await startApp(redis.url, { broadcast: { tui_interval: '20ms', web_interval: '50ms' } });
  await waitReady(running.app);
  for (const subscriber of SUBSCRIBERS) {
    const client = await connectClient(running.url, { type: subscriber.type, format: subscriber.format });
    await client.subscribe(subscriber.subscriptions);
    clients.push(client);
  }
});

after(async () => {
  for (const client of clients) client.close();
  publisher.disconnect();
  await running.close();
  await redis.kill();
});

let mark = 0;

test('every client view equals the server snapshot of its set after every batch', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(operation, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 3 }),
      async (batches) => {
        for (const batch of batches) {
          const pipeline = publisher.pipeline();
          for (const { channel, payload } of batch) pipeline.publish(channel, JSON.stringify(payload));
          // The mark is published last; once a client shows it, it has every change of the batch.
          mark++;
          pipeline.publish(MARK, JSON.stringify({ last_price: mark }));
          await pipeline.exec();
          await Promise.all(
            clients.map((client) =>
              viewWhere(
                client,
                (d) => ((d.market_data as JsonObject)?.MARK as JsonObject | undefined)?.last_price === mark,
              ),
            ),
          );
          for (const [index, client] of clients.entries()) {
            const filter = buildFilter(SUBSCRIBERS[index].subscriptions.map(validateSubscription));
            const expected = JSON.parse(JSON.stringify(running.app.state.snapshot(filter)));
            assert.deepEqual(
              client.view.data,
              expected,
              `client ${index} (${SUBSCRIBERS[index].subscriptions.join(',')})`,
            );
            assert.equal(client.resyncs, 0);
          }
        }
      },
    ),
    { numRuns: 25 },
  );
});
