import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Ingest, type IngestOptions } from '../../src/ingest/ingest.ts';
import { TERMINAL_ORDER_STATES } from '../../src/ingest/orders.ts';
import { PayloadError } from '../../src/ingest/schemas.ts';
import { applyMergePatch, type Json, type JsonObject } from '../../src/merge-patch.ts';
import { SINGLE, StateStore, TOO_OLD } from '../../src/state.ts';
import { buildFilter, INGEST_TOPICS } from '../../src/topics.ts';

const RETENTION = 60_000;

function setup(options: Partial<IngestOptions> = {}) {
  let time = 1_700_000_000_000;
  const state = new StateStore({ now: () => time });
  const ingest = new Ingest(state, {
    orderbookDepth: 20,
    tradesKept: 5,
    terminalOrderRetention: RETENTION,
    maxMessageSize: 1024 * 1024,
    now: () => time,
    ...options,
  });
  const send = (channel: string, payload: unknown) =>
    ingest.handleMessage(channel, typeof payload === 'string' ? payload : JSON.stringify(payload));
  const advance = (ms: number) => {
    time += ms;
  };
  return { state, ingest, send, advance };
}

/** Expects `send` to throw a PayloadError for `topic`, and checks nothing was applied and the error was counted. */
function expectRejected(
  context: ReturnType<typeof setup>,
  channel: string,
  payload: unknown,
  topic: string,
  message?: RegExp,
): PayloadError {
  const { state, ingest } = context;
  const sequence = state.sequence;
  const invalid = ingest.counters.invalid.redis[topic] ?? 0;
  const messages = { ...ingest.counters.messages.redis };
  let caught: unknown;
  try {
    if (Buffer.isBuffer(payload)) ingest.handleMessage(channel, payload);
    else context.send(channel, payload);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof PayloadError, `expected a PayloadError, got ${String(caught)}`);
  assert.equal(caught.topic, topic);
  if (message) assert.match(caught.message, message);
  assert.equal(state.sequence, sequence, 'a rejected message changed the state');
  assert.equal(ingest.counters.invalid.redis[topic], invalid + 1);
  assert.deepEqual(ingest.counters.messages.redis, messages);
  return caught;
}

describe('Ingest: market_data', () => {
  test('takes the symbol from the channel when the payload has none, upper-cased', () => {
    const context = setup();
    context.send('market_data:btcusdt', { last_price: 97000.5 });
    assert.deepEqual(context.state.get('market_data', 'BTCUSDT'), { last_price: 97000.5, symbol: 'BTCUSDT' });
    assert.equal(context.state.sequence, 1);
    assert.equal(context.ingest.counters.messages.redis.market_data, 1);
  });

  test('the payload symbol wins over the channel', () => {
    const context = setup();
    context.send('market_data:ANY', { symbol: 'ethusdt', last_price: 1 });
    assert.deepEqual(context.state.get('market_data', 'ETHUSDT'), { symbol: 'ETHUSDT', last_price: 1 });
    assert.equal(context.state.get('market_data', 'ANY'), undefined);
  });

  test('a channel without a suffix needs a symbol in the payload', () => {
    const context = setup();
    context.send('market_data', { symbol: 'BTC', last_price: 1 });
    assert.deepEqual(context.state.get('market_data', 'BTC'), { symbol: 'BTC', last_price: 1 });
    expectRejected(context, 'market_data', { last_price: 1 }, 'market_data', /symbol/);
    expectRejected(context, 'market_data:*', { last_price: 1 }, 'market_data', /symbol/);
  });

  test('numbers sent as strings become numbers; timestamps are kept as sent', () => {
    const context = setup();
    context.send('market_data:BTC', {
      last_price: '97000.50',
      bid_price: '-1.5e2',
      ask_price: 97001,
      volume_24h: '12',
      high_24h: '1E3',
      low_24h: '0.0001',
      updated_at: '2024-11-19T07:06:40Z',
    });
    assert.deepEqual(context.state.get('market_data', 'BTC'), {
      symbol: 'BTC',
      last_price: 97000.5,
      bid_price: -150,
      ask_price: 97001,
      volume_24h: 12,
      high_24h: 1000,
      low_24h: 0.0001,
      updated_at: '2024-11-19T07:06:40Z',
    });
  });

  test('extra fields are kept; null optional fields are dropped', () => {
    const context = setup();
    context.send('market_data:BTC', {
      last_price: 1,
      bid_price: null,
      ask_price: null,
      updated_at: null,
      exchange: 'binance',
      extra: { nested: [1, 2] },
      note: null,
    });
    assert.deepEqual(context.state.get('market_data', 'BTC'), {
      symbol: 'BTC',
      last_price: 1,
      exchange: 'binance',
      extra: { nested: [1, 2] },
    });
  });

  test('a newer message replaces the entity', () => {
    const context = setup();
    context.send('market_data:BTC', { last_price: 1, bid_price: 0.5 });
    context.send('market_data:BTC', { last_price: 2 });
    assert.deepEqual(context.state.get('market_data', 'BTC'), { symbol: 'BTC', last_price: 2 });
    assert.equal(context.ingest.counters.messages.redis.market_data, 2);
  });

  test('invalid market data', () => {
    const context = setup();
    expectRejected(context, 'market_data:BTC', { bid_price: 1 }, 'market_data', /last_price/);
    expectRejected(context, 'market_data:BTC', { last_price: 'cheap' }, 'market_data');
    expectRejected(context, 'market_data:BTC', { last_price: '1.' }, 'market_data');
    expectRejected(context, 'market_data:BTC', { last_price: true }, 'market_data');
    expectRejected(context, 'market_data:BTC', { last_price: 1, bid_price: 'x' }, 'market_data');
    expectRejected(context, 'market_data:BTC', { last_price: 1, symbol: 'BTC/USDT' }, 'market_data');
    expectRejected(context, 'market_data:BTC', { last_price: 1, symbol: null }, 'market_data');
    expectRejected(context, 'market_data:BTC', [1, 2], 'market_data');
    expectRejected(context, 'market_data:BTC', 'null', 'market_data');
    expectRejected(context, 'market_data:BTC/USDT', { last_price: 1 }, 'market_data', /symbol/);
    assert.equal(context.ingest.counters.invalid.redis.market_data, 10);
    assert.equal(context.ingest.counters.messages.redis.market_data, undefined);
  });
});

describe('Ingest: orderbook', () => {
  function shuffled<T>(items: T[]): T[] {
    // A fixed permutation (no randomness in the test): interleave from both ends and the middle.
    const result: T[] = [];
    const step = 7;
    for (let start = 0; start < step; start++)
      for (let i = start; i < items.length; i += step) result.push(items[i]);
    return result;
  }

  test('a full book keeps the best levels: bids descending, asks ascending, empty levels dropped', () => {
    const context = setup({ orderbookDepth: 20 });
    const bids: Record<string, number | string> = {};
    const asks: Record<string, number | string> = {};
    // 2000 levels a side, in no order; every fifth level empty, alternating number and string quantities.
    for (const i of shuffled(Array.from({ length: 2000 }, (_, i) => i))) {
      const quantity = i % 5 === 0 ? (i % 2 ? '0' : 0) : i % 2 ? `${i / 100}` : i / 100;
      bids[(50_000 - i * 0.5).toFixed(1)] = quantity;
      asks[(50_000.5 + i * 0.5).toFixed(1)] = quantity;
    }
    context.send('orderbook:btcusdt', { bids, asks, last_update_id: '123456', timestamp: 1_732_000_000_000 });
    const book = context.state.get('orderbook', 'BTCUSDT') as JsonObject;
    const expectedBids = Array.from({ length: 2000 }, (_, i) => i)
      .filter((i) => i % 5 !== 0)
      .slice(0, 20)
      .map((i) => [50_000 - i * 0.5, i / 100]);
    const expectedAsks = Array.from({ length: 2000 }, (_, i) => i)
      .filter((i) => i % 5 !== 0)
      .slice(0, 20)
      .map((i) => [50_000.5 + i * 0.5, i / 100]);
    assert.deepEqual(book.bids, expectedBids);
    assert.deepEqual(book.asks, expectedAsks);
    assert.equal(book.symbol, 'BTCUSDT');
    assert.equal(book.last_update_id, 123456);
    assert.equal(book.timestamp, 1_732_000_000_000);
  });

  test('a book shallower than the depth keeps every non-empty level', () => {
    const context = setup({ orderbookDepth: 20 });
    context.send('orderbook:ETH', {
      bids: { '100': 1, '101': '2', '99.5': 0 },
      asks: { '103': 1, '102': 3 },
      initialized: true,
    });
    assert.deepEqual(context.state.get('orderbook', 'ETH'), {
      symbol: 'ETH',
      bids: [
        [101, 2],
        [100, 1],
      ],
      asks: [
        [102, 3],
        [103, 1],
      ],
      initialized: true,
    });
  });

  test('an empty book side is an empty list', () => {
    const context = setup();
    context.send('orderbook:ETH', { bids: {}, asks: { '1': 0 } });
    const book = context.state.get('orderbook', 'ETH') as JsonObject;
    assert.deepEqual(book.bids, []);
    assert.deepEqual(book.asks, []);
  });

  test('a non-numeric price is rejected and nothing is applied', () => {
    const context = setup();
    for (const price of ['abc', '', ' ', 'Infinity', 'NaN']) {
      expectRejected(
        context,
        'orderbook:ETH',
        { bids: { '100': 1, [price]: 1 }, asks: {} },
        'orderbook',
        /price/,
      );
      expectRejected(context, 'orderbook:ETH', { bids: {}, asks: { [price]: 1 } }, 'orderbook', /price/);
    }
    assert.equal(context.state.get('orderbook', 'ETH'), undefined);
  });

  test('invalid books', () => {
    const context = setup();
    expectRejected(context, 'orderbook:ETH', { bids: { '100': 'lots' }, asks: {} }, 'orderbook');
    expectRejected(context, 'orderbook:ETH', { bids: [[100, 1]], asks: {} }, 'orderbook');
    expectRejected(context, 'orderbook:ETH', { asks: {} }, 'orderbook');
    expectRejected(context, 'orderbook:ETH', { bids: {}, asks: {}, initialized: 'yes' }, 'orderbook');
  });

  test('a stored book holds the best levels of each side, as sorting the whole side would (property)', () => {
    const price = fc.integer({ min: 1, max: 500 }).map((p) => String(p / 4));
    const quantity = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1000 }));
    fc.assert(
      fc.property(
        fc.dictionary(price, quantity, { maxKeys: 60, noNullPrototype: true }),
        fc.integer({ min: 1, max: 25 }),
        (side, depth) => {
          const best = (descending: boolean) =>
            Object.entries(side)
              .map(([p, q]) => [Number(p), q])
              .filter(([, q]) => q > 0)
              .sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]))
              .slice(0, depth);
          const context = setup({ orderbookDepth: depth });
          context.send('orderbook:BTC', { bids: side, asks: side });
          const book = context.state.get('orderbook', 'BTC') as JsonObject;
          assert.deepEqual(book.bids, best(true));
          assert.deepEqual(book.asks, best(false));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('Ingest: trades', () => {
  const trade = (id: number | string, timestamp: number, extra: object = {}) => ({
    trade_id: id,
    price: '100.5',
    quantity: 2,
    timestamp,
    ...extra,
  });
  const ids = (context: ReturnType<typeof setup>, symbol: string) =>
    (context.state.get('trades', symbol) as JsonObject[]).map((t) => t.trade_id);

  test('stores a list per symbol, newest first by timestamp', () => {
    const context = setup({ tradesKept: 5 });
    context.send('trades:btc', trade(1, 1000));
    context.send('trades:btc', trade(2, 3000));
    context.send('trades:btc', trade(3, 2000)); // late: lands in its place
    context.send('trades:btc', trade(4, 500, { is_buyer_maker: true }));
    assert.deepEqual(ids(context, 'BTC'), [2, 3, 1, 4]);
    const list = context.state.get('trades', 'BTC') as JsonObject[];
    assert.deepEqual(list[0], { trade_id: 2, price: 100.5, quantity: 2, timestamp: 3000, symbol: 'BTC' });
    assert.equal(list[3].is_buyer_maker, true);
    assert.equal(context.ingest.counters.messages.redis.trades, 4);
  });

  test('keeps at most tradesKept, dropping the oldest', () => {
    const context = setup({ tradesKept: 3 });
    for (let i = 1; i <= 6; i++) context.send('trades:BTC', trade(i, i * 1000));
    assert.deepEqual(ids(context, 'BTC'), [6, 5, 4]);
    // A trade older than all kept ones does not push a newer one out.
    context.send('trades:BTC', trade(99, 1));
    assert.deepEqual(ids(context, 'BTC'), [6, 5, 4]);
  });

  test('a duplicate trade_id replaces the earlier one', () => {
    const context = setup({ tradesKept: 5 });
    context.send('trades:BTC', trade('a', 1000, { price: 1 }));
    context.send('trades:BTC', trade('b', 2000));
    context.send('trades:BTC', trade('a', 3000, { price: 2 }));
    const list = context.state.get('trades', 'BTC') as JsonObject[];
    assert.deepEqual(
      list.map((t) => [t.trade_id, t.price]),
      [
        ['a', 2],
        ['b', 100.5],
      ],
    );
  });

  test('symbols are kept apart', () => {
    const context = setup();
    context.send('trades:BTC', trade(1, 1));
    context.send('trades', { ...trade(2, 2), symbol: 'eth' });
    assert.deepEqual(ids(context, 'BTC'), [1]);
    assert.deepEqual(ids(context, 'ETH'), [2]);
  });

  test('invalid trades', () => {
    const context = setup();
    expectRejected(context, 'trades:BTC', { price: 1, quantity: 1, timestamp: 1 }, 'trades', /trade_id/);
    expectRejected(context, 'trades:BTC', { ...trade(1, 1), trade_id: '' }, 'trades');
    expectRejected(context, 'trades:BTC', { ...trade(1, 1), trade_id: 1.5 }, 'trades');
    expectRejected(context, 'trades:BTC', { trade_id: 1, price: 1, quantity: 1 }, 'trades', /timestamp/);
    expectRejected(context, 'trades:BTC', { ...trade(1, 1), is_buyer_maker: 'yes' }, 'trades');
    expectRejected(context, 'trades', trade(1, 1), 'trades', /symbol/);
  });
});

describe('Ingest: orders', () => {
  const order = (id: string | number, state: string, extra: object = {}) => ({
    order_id: id,
    symbol: 'btcusdt',
    side: 'BUY',
    state,
    quantity: '1.5',
    price: 100,
    ...extra,
  });

  test('a plain order is stored by id, with symbol and state upper-cased', () => {
    const context = setup();
    context.send('orders:updates', order('o-1', 'new', { client_order_id: null, fee: '0.01' }));
    assert.deepEqual(context.state.get('orders', 'o-1'), {
      order_id: 'o-1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      state: 'NEW',
      quantity: 1.5,
      price: 100,
      fee: 0.01,
    });
  });

  test('a numeric order_id becomes a string key', () => {
    const context = setup();
    context.send('orders:x', order(12345, 'NEW'));
    assert.equal((context.state.get('orders', '12345') as JsonObject).order_id, '12345');
  });

  test('an envelope {order, update_type, timestamp} is unwrapped', () => {
    const context = setup();
    context.send('orders:x', { order: order('o-2', 'PARTIALLY_FILLED'), update_type: 'FILL', timestamp: 1 });
    assert.deepEqual(context.state.get('orders', 'o-2'), {
      order_id: 'o-2',
      symbol: 'BTCUSDT',
      side: 'BUY',
      state: 'PARTIALLY_FILLED',
      quantity: 1.5,
      price: 100,
    });
    context.send('orders:x', { order: order('o-3', 'NEW') });
    assert.ok(context.state.get('orders', 'o-3'));
    context.send('orders:x', { order: order('o-4', 'NEW'), update_type: null });
    assert.ok(context.state.get('orders', 'o-4'));
  });

  test('terminal orders are removed by sweepTerminalOrders only after the retention', () => {
    const context = setup();
    const { state, ingest } = context;
    assert.deepEqual([...TERMINAL_ORDER_STATES].sort(), [
      'CANCELED',
      'CANCELLED',
      'EXPIRED',
      'FILLED',
      'REJECTED',
    ]);
    context.send('orders:x', order('live', 'NEW'));
    context.send('orders:x', order('filled', 'FILLED'));
    context.send('orders:x', order('canceled', 'canceled'));
    context.advance(10_000);
    context.send('orders:x', order('rejected', 'REJECTED'));
    context.send('orders:x', { order: order('expired', 'EXPIRED'), update_type: 'EXPIRE' });
    assert.equal(ingest.sweepTerminalOrders(), 0);
    context.advance(RETENTION - 10_001); // 1 ms before the first two expire
    assert.equal(ingest.sweepTerminalOrders(), 0);
    assert.equal([...state.keys('orders')].length, 5);
    context.advance(1);
    const sequence = state.sequence;
    assert.equal(ingest.sweepTerminalOrders(), 2);
    assert.equal(state.sequence, sequence + 2);
    assert.deepEqual([...state.keys('orders')].sort(), ['expired', 'live', 'rejected']);
    assert.equal(ingest.sweepTerminalOrders(), 0);
    context.advance(10_000);
    assert.equal(ingest.sweepTerminalOrders(), 2);
    assert.deepEqual([...state.keys('orders')], ['live']);
    context.advance(100 * RETENTION);
    assert.equal(ingest.sweepTerminalOrders(), 0);
    assert.deepEqual([...state.keys('orders')], ['live']);
  });

  test('an order that goes back to a non-terminal state is not swept', () => {
    const context = setup();
    context.send('orders:x', order('o', 'FILLED', { updated_at: 1_700_000_000 }));
    context.advance(1000);
    // Only a later time takes an order back from a terminal state (the lifecycle never goes back on its own).
    context.send('orders:x', order('o', 'NEW', { updated_at: 1_700_000_001 }));
    context.advance(RETENTION * 2);
    assert.equal(context.ingest.sweepTerminalOrders(), 0);
    assert.equal((context.state.get('orders', 'o') as JsonObject).state, 'NEW');
  });

  test('a later terminal update restarts the retention', () => {
    const context = setup();
    context.send('orders:x', order('a', 'CANCELED'));
    context.advance(RETENTION / 2);
    context.send('orders:x', order('b', 'FILLED'));
    context.send('orders:x', order('a', 'CANCELED', { note: 'again' }));
    context.advance(RETENTION / 2);
    // `a` expires RETENTION after its last update, not its first; it must not block `b` either.
    assert.equal(context.ingest.sweepTerminalOrders(), 0);
    context.advance(RETENTION / 2);
    assert.equal(context.ingest.sweepTerminalOrders(), 2);
    assert.equal([...context.state.keys('orders')].length, 0);
  });

  test('invalid orders', () => {
    const context = setup();
    expectRejected(context, 'orders:x', { symbol: 'BTC', state: 'NEW' }, 'orders', /order_id/);
    expectRejected(context, 'orders:x', { order_id: 'o', state: 'NEW' }, 'orders', /symbol/);
    expectRejected(context, 'orders:x', { order_id: 'o', symbol: 'BTC' }, 'orders', /state/);
    expectRejected(context, 'orders:x', order('o', ''), 'orders');
    expectRejected(context, 'orders:x', order('o', 'NEW', { price: 'cheap' }), 'orders');
    expectRejected(context, 'orders:x', order('o', 'NEW', { side: 1 }), 'orders');
    expectRejected(context, 'orders:x', { order: { order_id: 'o' }, update_type: 'NEW' }, 'orders');
    expectRejected(context, 'orders:x', { order: [], update_type: 'NEW' }, 'orders');
  });
});

describe('Ingest: positions', () => {
  test('stored by upper-cased symbol, numbers normalized', () => {
    const context = setup();
    context.send('positions:x', { symbol: 'btcusdt', side: 'LONG', quantity: '0.5', entry_price: '100' });
    assert.deepEqual(context.state.get('positions', 'BTCUSDT'), {
      symbol: 'BTCUSDT',
      side: 'LONG',
      quantity: 0.5,
      entry_price: 100,
    });
  });

  test('quantity 0 or "0" removes the position', () => {
    const context = setup();
    context.send('positions:x', { symbol: 'BTC', quantity: 1 });
    context.send('positions:x', { symbol: 'ETH', quantity: -2 });
    context.send('positions:x', { symbol: 'BTC', quantity: 0 });
    assert.equal(context.state.get('positions', 'BTC'), undefined);
    context.send('positions:x', { symbol: 'eth', quantity: '0' });
    assert.equal(context.state.get('positions', 'ETH'), undefined);
    context.send('positions:x', { symbol: 'XRP', quantity: 3 });
    context.send('positions:x', { symbol: 'XRP', quantity: '0.000' });
    assert.equal(context.state.get('positions', 'XRP'), undefined);
    // Closing a position that is not there changes nothing but still counts as a valid message.
    const sequence = context.state.sequence;
    context.send('positions:x', { symbol: 'DOGE', quantity: 0 });
    assert.equal(context.state.sequence, sequence);
    assert.equal(context.ingest.counters.messages.redis.positions, 7);
  });

  test('invalid positions', () => {
    const context = setup();
    expectRejected(context, 'positions:x', { quantity: 1 }, 'positions', /symbol/);
    expectRejected(context, 'positions:x', { symbol: 'BTC' }, 'positions', /quantity/);
    expectRejected(context, 'positions:x', { symbol: 'BTC', quantity: null }, 'positions');
  });
});

describe('Ingest: account', () => {
  test('a single object with numeric balances', () => {
    const context = setup();
    context.send('account:main', {
      total_balance: '1000.5',
      available_balance: 900,
      margin_used: null,
      balances: { USDT: '1000.5', BTC: 0.01 },
      updated_at: 1,
    });
    assert.deepEqual(context.state.get('account', SINGLE), {
      total_balance: 1000.5,
      available_balance: 900,
      balances: { USDT: 1000.5, BTC: 0.01 },
      updated_at: 1,
    });
  });

  test('invalid accounts', () => {
    const context = setup();
    expectRejected(context, 'account:main', { available_balance: 1 }, 'account', /total_balance/);
    expectRejected(context, 'account:main', { total_balance: 1, balances: { USDT: 'lots' } }, 'account');
    expectRejected(context, 'account:main', { total_balance: 1, balances: [1] }, 'account');
  });
});

describe('Ingest: strategies', () => {
  test('a numeric id becomes a string key and field', () => {
    const context = setup();
    context.send('strategies:x', { id: 7, name: 'grid', status: 'running', pnl: '12.5', win_rate: 0.6 });
    assert.deepEqual(context.state.get('strategies', '7'), {
      id: '7',
      name: 'grid',
      status: 'running',
      pnl: 12.5,
      win_rate: 0.6,
    });
    context.send('strategies:x', { id: 'mm-1', trades: '3' });
    assert.deepEqual(context.state.get('strategies', 'mm-1'), { id: 'mm-1', trades: 3 });
  });

  test('invalid strategies', () => {
    const context = setup();
    expectRejected(context, 'strategies:x', { name: 'grid' }, 'strategies', /id/);
    expectRejected(context, 'strategies:x', { id: 'x'.repeat(129) }, 'strategies');
    expectRejected(context, 'strategies:x', { id: true }, 'strategies');
  });
});

describe('Ingest: invalid input in general', () => {
  test('not JSON', () => {
    const context = setup();
    expectRejected(context, 'market_data:BTC', '{"last_price": ', 'market_data', /JSON/);
    expectRejected(context, 'orders:x', Buffer.from('not json'), 'orders', /JSON/);
    expectRejected(context, 'account:x', '', 'account', /JSON/);
  });

  test('an unknown channel prefix counts as unknown', () => {
    const context = setup();
    expectRejected(context, 'nope:BTC', { last_price: 1 }, 'unknown', /nope:BTC/);
    expectRejected(context, 'system:x', { a: 1 }, 'unknown');
    expectRejected(context, 'system', { a: 1 }, 'unknown');
    expectRejected(context, '', { a: 1 }, 'unknown');
    assert.equal(context.ingest.counters.invalid.redis.unknown, 4);
  });

  test('oversized payloads are rejected before parsing', () => {
    const context = setup({ maxMessageSize: 100 });
    const padding = 'x'.repeat(100);
    expectRejected(context, 'market_data:BTC', { last_price: 1, padding }, 'market_data', /exceeds 100/);
    expectRejected(context, 'market_data:BTC', Buffer.alloc(101, 0x20), 'market_data', /exceeds/);
    // Exactly the limit is fine.
    const exact = JSON.stringify({ last_price: 1, pad: '' });
    const fits = JSON.stringify({ last_price: 1, pad: 'x'.repeat(100 - exact.length) });
    assert.equal(Buffer.byteLength(fits), 100);
    context.send('market_data:BTC', fits);
    assert.ok(context.state.get('market_data', 'BTC'));
  });

  // Failed with an earlier src/ingest.ts: for a string payload the limit is checked against
  // `payload.length` (UTF-16 code units), not its size in bytes. The snapshot load in
  // plugins/redis-ingest.ts passes strings.
  test('the size limit counts bytes of a string payload, not characters', () => {
    const context = setup({ maxMessageSize: 100 });
    const payload = JSON.stringify({ last_price: 1, note: '€'.repeat(40) }); // 60 characters, 140 bytes
    assert.ok(payload.length <= 100);
    assert.ok(Buffer.byteLength(payload) > 100);
    expectRejected(context, 'market_data:BTC', payload, 'market_data', /exceeds 100/);
  });

  test('valid messages are counted per topic', () => {
    const context = setup();
    context.send('market_data:BTC', { last_price: 1 });
    context.send('market_data:ETH', { last_price: 1 });
    context.send('account:x', { total_balance: 1 });
    context.ingest.handleMessage(
      'orders:x',
      Buffer.from(JSON.stringify({ order_id: 1, symbol: 'B', state: 'NEW' })),
    );
    assert.throws(() => context.send('account:x', { nope: 1 }), PayloadError);
    assert.deepEqual(context.ingest.counters.messages, {
      redis: { market_data: 2, account: 1, orders: 1 },
      nats: {},
      poll: {},
    });
    assert.deepEqual(context.ingest.counters.invalid, { redis: { account: 1 }, nats: {}, poll: {} });
  });

  test('polled records are counted as the poll source: one per record, a refused poll once', () => {
    const context = setup();
    const { counters } = context.ingest;
    context.ingest.replaceSection(
      'orders',
      [
        { order_id: 'a', symbol: 'B', state: 'NEW' },
        { order_id: 'b', symbol: 'B', state: 'NEW' },
      ],
      0,
    );
    context.ingest.replaceSection('strategies', [], 0);
    context.ingest.replaceSingle('account', { total_balance: 1 });
    context.ingest.replaceSingle('risk', { exposure: 1 });
    assert.throws(
      () =>
        context.ingest.replaceSection(
          'strategies',
          [
            { id: 'a', pnl: 1 },
            { id: 'b', pnl: 'x' },
          ],
          0,
        ),
      PayloadError,
    );
    assert.throws(() => context.ingest.replaceSingle('account', { nope: 1 }), PayloadError);
    assert.throws(
      () => context.ingest.replaceAccount({ total_balance: 1 }, [{ symbol: 'B' }], 0),
      PayloadError,
    );
    assert.throws(
      () => context.ingest.replaceSingle('risk', { deep: Number.POSITIVE_INFINITY }),
      PayloadError,
    );
    // A Redis message alongside: each source keeps its own count.
    context.send('orders:x', { order_id: 'c', symbol: 'B', state: 'NEW' });
    assert.deepEqual(counters.messages, {
      redis: { orders: 1 },
      nats: {},
      poll: { orders: 2, account: 1, risk: 1 },
    });
    assert.deepEqual(counters.invalid, {
      redis: {},
      nats: {},
      poll: { strategies: 1, account: 1, positions: 1, risk: 1 },
    });
  });

  test('every ingest topic has a handler', () => {
    assert.deepEqual([...INGEST_TOPICS].sort(), [
      'account',
      'alerts',
      'fills',
      'market_data',
      'orderbook',
      'orders',
      'positions',
      'risk',
      'strategies',
      'trades',
    ]);
  });

  test('apply validates a parsed payload without counting it', () => {
    const context = setup();
    context.ingest.apply('market_data', { last_price: 5 }, 'btc');
    assert.deepEqual(context.state.get('market_data', 'BTC'), { last_price: 5, symbol: 'BTC' });
    assert.throws(() => context.ingest.apply('market_data', { last_price: 'x' }, 'btc'), PayloadError);
    assert.deepEqual(context.ingest.counters.messages, { redis: {}, nats: {}, poll: {} });
    assert.deepEqual(context.ingest.counters.invalid, { redis: {}, nats: {}, poll: {} });
  });
});

describe('Ingest: what is stored survives the merge-patch wire', () => {
  // A client starts from an empty snapshot and applies changesSince; it must end up with the snapshot.
  function viewAfter(context: ReturnType<typeof setup>, topics: string[]): { view: Json; snapshot: Json } {
    const filter = buildFilter(topics);
    const changes = context.state.changesSince(0, filter);
    assert.notEqual(changes, TOO_OLD);
    const empty = JSON.parse(JSON.stringify(new StateStore().snapshot(filter))) as JsonObject;
    const view = changes ? applyMergePatch(empty, JSON.parse(JSON.stringify(changes))) : empty;
    return { view, snapshot: JSON.parse(JSON.stringify(context.state.snapshot(filter))) };
  }

  test('for ordinary payloads of every topic', () => {
    const context = setup();
    context.send('market_data:BTC', { last_price: 1, bid_price: null, extra: { a: [1, null] } });
    context.send('orderbook:BTC', { bids: { '1': 1 }, asks: { '2': 1 } });
    context.send('trades:BTC', { trade_id: 1, price: 1, quantity: 1, timestamp: 1 });
    context.send('orders:x', { order_id: 1, symbol: 'B', state: 'NEW', price: null });
    context.send('positions:x', { symbol: 'B', quantity: 1 });
    context.send('account:x', { total_balance: 1, balances: { USDT: 1 } });
    context.send('strategies:x', { id: 1, name: null });
    const { view, snapshot } = viewAfter(context, [...INGEST_TOPICS]);
    assert.deepEqual(view, snapshot);
  });

  // Failed with an earlier src/ingest.ts: normalize() drops null fields only at the top level, so a null
  // inside a kept extra field is stored; a merge patch cannot carry it, and a client that built its view
  // from diffs ends up with `{}` where the snapshot has `{"reason": null}`.
  test('for a null nested inside an extra field', () => {
    const context = setup();
    context.send('orders:x', { order_id: 1, symbol: 'B', state: 'NEW', meta: { reason: null, tag: 'x' } });
    const { view, snapshot } = viewAfter(context, ['orders']);
    assert.deepEqual(view, snapshot);
  });
});
