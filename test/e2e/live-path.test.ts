import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { DashboardClient, DiffUpdate, JsonObject } from '../../src/client.ts';
import { applyMergePatch, type Json } from '../../src/merge-patch.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, openSocket, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;
const clients: DashboardClient[] = [];

async function client(options: Parameters<typeof connectClient>[1] = {}): Promise<DashboardClient> {
  const connected = await connectClient(running.url, options);
  clients.push(connected);
  return connected;
}

function publish(channel: string, payload: unknown): Promise<number> {
  return publisher.publish(channel, typeof payload === 'string' ? payload : JSON.stringify(payload));
}

/** The server's own snapshot of a subscription set, over HTTP, as a client would compare it. */
async function serverView(topics: string[]): Promise<{ sequence: number; data: JsonObject }> {
  const response = await fetch(`${running.url}/api/v1/state?topics=${topics.join(',')}`);
  assert.equal(response.status, 200);
  return (await response.json()) as { sequence: number; data: JsonObject };
}

const price = (data: JsonObject, symbol: string) =>
  ((data.market_data as JsonObject | undefined)?.[symbol] as JsonObject | undefined)?.last_price;

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  // Market data already in Redis before the hub starts: a first client must see it.
  await publisher.set('market_data:SOLUSDT', JSON.stringify({ symbol: 'SOLUSDT', last_price: 150.25 }));
  running = await startApp(redis.url, {
    broadcast: { tui_interval: '100ms', web_interval: '250ms' },
    ingest: { terminal_order_retention: '300ms' },
  });
  await waitReady(running.app);
});

after(async () => {
  for (const c of clients) c.close();
  publisher.disconnect();
  await running.close();
  await redis.kill();
});

describe('live data path', () => {
  test('market data stored in Redis keys is loaded at start', async () => {
    const c = await client();
    const snapshot = await c.subscribe(['market_data']);
    assert.equal(price(snapshot.data, 'SOLUSDT'), 150.25);
    assert.equal(snapshot.epoch, running.app.state.epoch);
    const http = await serverView(['market_data']);
    assert.deepEqual(snapshot.data.market_data, http.data.market_data);
  });

  test('snapshot, then only the changed fields as merge patches', async () => {
    const c = await client({ type: 'tui' });
    await c.subscribe(['market_data:BTCUSDT', 'positions']);
    await publish('market_data:BTCUSDT', { last_price: '50000.5', bid_price: 50000, ask_price: 50001 });
    await viewWhere(c, (d) => price(d, 'BTCUSDT') === 50000.5);
    const diff = c.next('diff_update');
    await publish('market_data:BTCUSDT', { last_price: 50010, bid_price: 50000, ask_price: 50001 });
    const update = await diff;
    assert.deepEqual(update.changes, { market_data: { BTCUSDT: { last_price: 50010 } } });
    assert.equal(typeof update.base_sequence, 'number');
    assert.ok(update.sequence > update.base_sequence);
  });

  test('a closed position and a swept terminal order arrive as null', async () => {
    const c = await client({ type: 'tui' });
    await c.subscribe(['positions', 'orders']);
    await publish('positions:updates', { symbol: 'ETHUSDT', side: 'LONG', quantity: 2, entry_price: 3000 });
    await publish('orders:updates', {
      order: { order_id: 'o-1', symbol: 'ETHUSDT', side: 'BUY', type: 'LIMIT', state: 'FILLED', quantity: 2 },
      update_type: 'FILLED',
      timestamp: 1,
    });
    await viewWhere(
      c,
      (d) =>
        (d.positions as JsonObject).ETHUSDT !== undefined && (d.orders as JsonObject)['o-1'] !== undefined,
    );
    const removals: DiffUpdate[] = [];
    c.on('diff_update', (m) => removals.push(m as DiffUpdate));
    await publish('positions:updates', { symbol: 'ETHUSDT', quantity: '0' });
    // The filled order is retained for 300ms, then removed from the state.
    await viewWhere(
      c,
      (d) =>
        Object.keys(d.positions as JsonObject).length === 0 &&
        Object.keys(d.orders as JsonObject).length === 0,
    );
    const patches = removals.map((m) => m.changes);
    assert.ok(patches.some((p) => (p.positions as JsonObject | undefined)?.ETHUSDT === null));
    assert.ok(patches.some((p) => (p.orders as JsonObject | undefined)?.['o-1'] === null));
    assert.deepEqual((await serverView(['orders'])).data.orders, {});
  });

  test('every payload kind reaches a subscriber of all topics, equal to the server snapshot', async () => {
    const topics = ['market_data', 'orderbook', 'trades', 'orders', 'positions', 'account', 'strategies'];
    const c = await client({ type: 'tui' });
    await c.subscribe(topics);
    await publish('orderbook:ADAUSDT', {
      bids: { '0.50': 100, '0.49': 50, '0.51': '10', '0.40': 0 },
      asks: { '0.53': 5, '0.52': 7 },
      last_update_id: 9,
      timestamp: 1732000000000000,
      initialized: true,
    });
    await publish('trades:ADAUSDT', {
      trade_id: 't1',
      price: '0.51',
      quantity: 3,
      timestamp: 1000,
      is_buyer_maker: true,
    });
    await publish('trades:ADAUSDT', {
      trade_id: 't2',
      price: 0.52,
      quantity: 1,
      timestamp: 2000,
      is_buyer_maker: false,
    });
    await publish('orders:ADAUSDT', {
      order_id: 'o-2',
      symbol: 'ADAUSDT',
      state: 'NEW',
      side: 'SELL',
      price: '0.6',
      quantity: 10,
    });
    await publish('account:main', {
      total_balance: '1000.5',
      available_balance: 900,
      balances: { USDT: '1000.5' },
    });
    await publish('strategies:all', {
      id: 7,
      name: 'grid',
      status: 'running',
      pnl: 12.5,
      trades: 3,
      win_rate: 0.66,
    });
    const data = await viewWhere(c, (d) => (d.strategies as JsonObject)['7'] !== undefined);
    const book = (data.orderbook as JsonObject).ADAUSDT as JsonObject;
    assert.deepEqual(book.bids, [
      [0.51, 10],
      [0.5, 100],
      [0.49, 50],
    ]);
    assert.deepEqual(book.asks, [
      [0.52, 7],
      [0.53, 5],
    ]);
    assert.equal(book.timestamp, 1732000000000000);
    assert.deepEqual(
      ((data.trades as JsonObject).ADAUSDT as JsonObject[]).map((t) => t.trade_id),
      ['t2', 't1'],
    );
    assert.equal(((data.orders as JsonObject)['o-2'] as JsonObject).price, 0.6);
    assert.deepEqual((data.account as JsonObject).balances, { USDT: 1000.5 });
    assert.equal(((data.strategies as JsonObject)['7'] as JsonObject).name, 'grid');
    const server = await serverView(topics);
    assert.equal(c.view.sequence, server.sequence);
    assert.deepEqual(c.view.data, server.data);
  });

  test('subscription scope: a symbol-scoped client sees only its symbol', async () => {
    const eth = await client({ type: 'tui' });
    const all = await client({ type: 'tui' });
    await eth.subscribe(['market_data:ethusdt']);
    await all.subscribe(['market_data']);
    const ethDiffs: DiffUpdate[] = [];
    eth.on('diff_update', (m) => ethDiffs.push(m as DiffUpdate));
    await publish('market_data:XRPUSDT', { last_price: 0.6 });
    await publish('market_data:ETHUSDT', { last_price: 3100 });
    await viewWhere(all, (d) => price(d, 'XRPUSDT') === 0.6 && price(d, 'ETHUSDT') === 3100);
    await viewWhere(eth, (d) => price(d, 'ETHUSDT') === 3100);
    assert.deepEqual(Object.keys(eth.view.data.market_data as JsonObject), ['ETHUSDT']);
    for (const diff of ethDiffs)
      assert.deepEqual(Object.keys(diff.changes.market_data as JsonObject), ['ETHUSDT']);
  });

  test('a client with no subscription receives nothing but replies', async () => {
    const raw = await openSocket(running.url, { query: 'type=tui' });
    const subscribed = await client({ type: 'tui' });
    await subscribed.subscribe(['market_data:NOSUB']);
    await publish('market_data:NOSUB', { last_price: 1 });
    // The subscribed client got the change, so the tick that would have reached the raw socket has passed.
    await viewWhere(subscribed, (d) => price(d, 'NOSUB') === 1);
    raw.ws.send(JSON.stringify({ action: 'ping' }));
    const reply = await raw.nextMessage(0);
    assert.equal(reply.type, 'pong');
    assert.equal(raw.messages.length, 1);
    raw.ws.close();
  });

  test('updates within one tick collapse into one diff holding the latest values', async () => {
    const c = await client({ type: 'web' });
    await c.subscribe(['market_data:DOTUSDT']);
    const diffs: DiffUpdate[] = [];
    c.on('diff_update', (m) => diffs.push(m as DiffUpdate));
    const pipeline = publisher.pipeline();
    for (let i = 1; i <= 200; i++) pipeline.publish('market_data:DOTUSDT', JSON.stringify({ last_price: i }));
    await pipeline.exec();
    await viewWhere(c, (d) => price(d, 'DOTUSDT') === 200);
    // 200 updates published back to back span at most a few 250 ms ticks.
    assert.ok(diffs.length <= 3, `expected at most 3 diffs, got ${diffs.length}`);
    assert.equal(((diffs.at(-1)!.changes.market_data as JsonObject).DOTUSDT as JsonObject).last_price, 200);
  });

  test('JSON and MessagePack clients receive the same content', async () => {
    const json = await client({ type: 'tui', format: 'json' });
    const msgpack = await client({ type: 'tui', format: 'msgpack' });
    await json.subscribe(['orderbook', 'market_data:LTCUSDT']);
    await msgpack.subscribe(['orderbook', 'market_data:LTCUSDT']);
    const jsonDiffs: DiffUpdate[] = [];
    const packDiffs: DiffUpdate[] = [];
    json.on('diff_update', (m) => jsonDiffs.push(m as DiffUpdate));
    msgpack.on('diff_update', (m) => packDiffs.push(m as DiffUpdate));
    await publish('market_data:LTCUSDT', {
      last_price: 70.12,
      volume_24h: '123456.789',
      updated_at: 1732000000123,
    });
    await publish('orderbook:LTCUSDT', {
      bids: { '70.1': 1.5 },
      asks: { '70.2': 2.25 },
      timestamp: 1732000000000001,
    });
    const done = (d: JsonObject) =>
      (d.orderbook as JsonObject).LTCUSDT !== undefined && price(d, 'LTCUSDT') === 70.12;
    await Promise.all([viewWhere(json, done), viewWhere(msgpack, done)]);
    assert.deepEqual(msgpack.view.data, json.view.data);
    assert.equal(msgpack.view.sequence, json.view.sequence);
    // The two formats are separate groups whose ticks may fall on either side of a publish, so the split into
    // diffs can differ; what the diffs carry, merged in order, may not.
    const merged = (diffs: DiffUpdate[]) =>
      diffs.reduce<Json>((acc, d) => applyMergePatch(acc, d.changes as Json), {});
    assert.ok(packDiffs.length > 0 && jsonDiffs.length > 0);
    assert.deepEqual(merged(packDiffs), merged(jsonDiffs));
  });

  test('terminal and web clients receive diffs at their own cadence', async () => {
    const tui = await client({ type: 'tui' });
    const web = await client({ type: 'web' });
    await tui.subscribe(['market_data:BNBUSDT']);
    await web.subscribe(['market_data:BNBUSDT']);
    let tuiDiffs = 0;
    let webDiffs = 0;
    tui.on('diff_update', () => tuiDiffs++);
    web.on('diff_update', () => webDiffs++);
    // Publish a change every 20 ms for 1.5 s: each client type should see one diff per tick of its own.
    const started = Date.now();
    let i = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        void publish('market_data:BNBUSDT', { last_price: ++i });
        if (Date.now() - started >= 1500) {
          clearInterval(timer);
          resolve();
        }
      }, 20);
    });
    await Promise.all([
      viewWhere(tui, (d) => price(d, 'BNBUSDT') === i),
      viewWhere(web, (d) => price(d, 'BNBUSDT') === i),
    ]);
    const elapsed = Date.now() - started;
    // Loose bounds: never more diffs than ticks, and the 100 ms client clearly more often than the 250 ms one.
    assert.ok(tuiDiffs <= Math.ceil(elapsed / 100) + 1, `tui got ${tuiDiffs} diffs in ${elapsed}ms`);
    assert.ok(webDiffs <= Math.ceil(elapsed / 250) + 1, `web got ${webDiffs} diffs in ${elapsed}ms`);
    assert.ok(tuiDiffs >= 5, `tui got only ${tuiDiffs} diffs`);
    assert.ok(tuiDiffs > webDiffs * 1.5, `tui ${tuiDiffs} vs web ${webDiffs}`);
  });

  test('unsubscribe narrows the view and replies with what remains', async () => {
    const c = await client({ type: 'tui' });
    await c.subscribe(['market_data', 'account']);
    const snapshot = c.next('state_update');
    const reply = await c.unsubscribe(['market_data']);
    assert.deepEqual(reply.subscriptions, ['account']);
    const narrowed = await snapshot;
    assert.equal(narrowed.data.market_data, undefined);
    const diffs: DiffUpdate[] = [];
    c.on('diff_update', (m) => diffs.push(m as DiffUpdate));
    await publish('market_data:BTCUSDT', { last_price: 42 });
    await publish('account:main', { total_balance: 77 });
    await viewWhere(c, (d) => (d.account as JsonObject | undefined)?.total_balance === 77);
    for (const diff of diffs) assert.equal(diff.changes.market_data, undefined);
  });

  test('resync and the type-form synonyms, on a connection that names the hub protocol', async () => {
    // Without ?protocol=hub, a first message in the type form would select the b25 web UI's protocol.
    const raw = await openSocket(running.url, { query: 'type=web&protocol=hub' });
    raw.ws.send(JSON.stringify({ type: 'subscribe', channels: ['account'] }));
    assert.equal((await raw.nextMessage(0)).type, 'subscribed');
    assert.equal((await raw.nextMessage(1)).type, 'state_update');
    raw.ws.send(JSON.stringify({ type: 'refresh' }));
    const refreshed = await raw.nextMessage(2);
    assert.equal(refreshed.type, 'state_update');
    raw.ws.send(JSON.stringify({ type: 'ping' }));
    assert.equal((await raw.nextMessage(3)).type, 'pong');
    raw.ws.send(JSON.stringify({ action: 'resync' }));
    assert.equal((await raw.nextMessage(4)).type, 'state_update');
    raw.ws.send(JSON.stringify({ type: 'unsubscribe', channels: ['account'] }));
    const unsubscribed = await raw.nextMessage(5);
    assert.deepEqual(unsubscribed.subscriptions, []);
    raw.ws.close();
  });
});
