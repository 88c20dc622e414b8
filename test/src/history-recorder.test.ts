/**
 * HistoryRecorder (src/history/recorder.ts): how the state's writes become history rows. First called directly as
 * StateStore.observeWrites calls it (topic, key, value, before), with a fake clock and a real HistoryQueue; then end
 * to end, from messages through a real Ingest and StateStore.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HistoryQueue } from '../../src/history/queue.ts';
import { HistoryRecorder } from '../../src/history/recorder.ts';
import type { HistoryKind, HistoryRow } from '../../src/history/rows.ts';
import { Ingest } from '../../src/ingest/ingest.ts';
import type { Json } from '../../src/merge-patch.ts';
import { SINGLE, StateStore } from '../../src/state.ts';

/** 2026-03-01T12:00:00Z. */
const T = Date.parse('2026-03-01T12:00:00Z');

function setup() {
  const clock = { now: T };
  const queue = new HistoryQueue(10_000);
  const recorder = new HistoryRecorder(queue, () => clock.now);
  /** Everything queued of `kind`, taken out. */
  const rows = (kind: HistoryKind): HistoryRow[] => queue.take(kind, queue.length(kind));
  return { clock, queue, recorder, rows };
}

const tick = (last_price: number | undefined, extra: Record<string, Json> = {}): Json => ({
  symbol: 'BTCUSDT',
  ...(last_price === undefined ? {} : { last_price }),
  ...extra,
});

describe('HistoryRecorder: market_data, one row per symbol and second', () => {
  test('ticks within a second make one row: open, high, low, close, last bid/ask, updates', () => {
    const { clock, recorder, queue, rows } = setup();
    recorder.written('market_data', 'BTCUSDT', tick(100, { bid_price: 99, ask_price: 101 }), undefined);
    clock.now = T + 200;
    recorder.written('market_data', 'BTCUSDT', tick(105, { bid_price: 104 }), undefined);
    clock.now = T + 500;
    recorder.written('market_data', 'BTCUSDT', tick(95), undefined);
    clock.now = T + 999;
    recorder.written('market_data', 'BTCUSDT', tick(98, { ask_price: 99.5 }), undefined);
    // The second is not over: nothing queued yet.
    assert.equal(queue.length('market_data'), 0);
    recorder.closeSeconds();
    assert.equal(queue.length('market_data'), 0, 'closeSeconds pushed a second that is not over');
    clock.now = T + 1000;
    recorder.closeSeconds();
    assert.deepEqual(rows('market_data'), [
      {
        ts: new Date(T),
        symbol: 'BTCUSDT',
        open: 100,
        high: 105,
        low: 95,
        close: 98,
        // The last bid given (104), kept through the ticks without one; the last ask (99.5).
        bid: 104,
        ask: 99.5,
        updates: 4,
      },
    ]);
    // Closed once: a second closeSeconds pushes nothing more.
    recorder.closeSeconds();
    assert.equal(queue.length('market_data'), 0);
  });

  test('a tick in a new second pushes the previous second; the new one starts afresh', () => {
    const { clock, recorder, rows } = setup();
    recorder.written('market_data', 'BTCUSDT', tick(100, { bid_price: 99 }), undefined);
    recorder.written('market_data', 'BTCUSDT', tick(101), undefined);
    clock.now = T + 1500;
    recorder.written('market_data', 'BTCUSDT', tick(200), undefined);
    const first = rows('market_data');
    assert.equal(first.length, 1);
    assert.deepEqual(first[0], {
      ts: new Date(T),
      symbol: 'BTCUSDT',
      open: 100,
      high: 101,
      low: 100,
      close: 101,
      bid: 99,
      ask: null,
      updates: 2,
    });
    clock.now = T + 5000;
    recorder.closeSeconds();
    // The bid of the earlier second is not carried into this one.
    assert.deepEqual(rows('market_data'), [
      {
        ts: new Date(T + 1000),
        symbol: 'BTCUSDT',
        open: 200,
        high: 200,
        low: 200,
        close: 200,
        bid: null,
        ask: null,
        updates: 1,
      },
    ]);
  });

  test('each symbol has its own second; closeSeconds pushes only the seconds that are over', () => {
    const { clock, recorder, rows } = setup();
    recorder.written('market_data', 'BTCUSDT', tick(1), undefined);
    clock.now = T + 1200;
    recorder.written('market_data', 'ETHUSDT', tick(2, { symbol: 'ETHUSDT' }), undefined);
    clock.now = T + 1800;
    recorder.closeSeconds();
    const closed = rows('market_data');
    assert.deepEqual(
      closed.map((r) => [r.symbol, r.ts.getTime(), r.close]),
      [['BTCUSDT', T, 1]],
    );
    clock.now = T + 2000;
    recorder.closeSeconds();
    assert.deepEqual(
      rows('market_data').map((r) => [r.symbol, r.ts.getTime(), r.close]),
      [['ETHUSDT', T + 1000, 2]],
    );
  });

  test('a tick without a finite last_price, or a removal, is no update', () => {
    const { clock, recorder, rows } = setup();
    recorder.written('market_data', 'BTCUSDT', tick(10), undefined);
    recorder.written('market_data', 'BTCUSDT', tick(undefined, { bid_price: 1, ask_price: 2 }), undefined);
    recorder.written('market_data', 'BTCUSDT', tick(undefined, { last_price: '11' }), undefined);
    recorder.written('market_data', 'BTCUSDT', undefined, tick(10));
    recorder.written('market_data', 'BTCUSDT', [1, 2], undefined);
    clock.now = T + 1000;
    recorder.closeSeconds();
    assert.deepEqual(rows('market_data'), [
      {
        ts: new Date(T),
        symbol: 'BTCUSDT',
        open: 10,
        high: 10,
        low: 10,
        close: 10,
        bid: null,
        ask: null,
        updates: 1,
      },
    ]);
    // A symbol whose ticks never had a price makes no row at all.
    recorder.written('market_data', 'ETHUSDT', tick(undefined, { bid_price: 1 }), undefined);
    clock.now = T + 3000;
    recorder.closeSeconds();
    assert.equal(rows('market_data').length, 0);
  });
});

describe('HistoryRecorder: trades and fills', () => {
  const trade = (id: string | number, extra: Record<string, Json> = {}): Json => ({
    trade_id: id,
    symbol: 'BTCUSDT',
    price: 100,
    quantity: 2,
    timestamp: T - 5000,
    ...extra,
  });

  test('only the trades the previous list did not have are pushed', () => {
    const { recorder, rows } = setup();
    const first = [trade(1)];
    recorder.written('trades', 'BTCUSDT', first, undefined);
    const second = [trade(3, { timestamp: T }), trade(2, { timestamp: T - 1000 }), trade(1)];
    recorder.written('trades', 'BTCUSDT', second, first);
    // The same list again (a duplicate replaced in place): nothing new.
    recorder.written('trades', 'BTCUSDT', [trade(3, { price: 7, timestamp: T }), trade(2), trade(1)], second);
    assert.deepEqual(
      rows('trades').map((r) => r.trade_id),
      ['1', '3', '2'],
    );
  });

  test('a trade row: time from its timestamp, ids as text, side from is_buyer_maker when there is no side', () => {
    const { recorder, rows } = setup();
    recorder.written(
      'trades',
      'BTCUSDT',
      [
        trade(1, { is_buyer_maker: true }),
        trade(2, { is_buyer_maker: false }),
        trade('t3', { side: 'BUY', is_buyer_maker: true }),
        trade(4, { timestamp: null }),
      ],
      [],
    );
    const got = rows('trades');
    assert.deepEqual(got[0], {
      ts: new Date(T - 5000),
      symbol: 'BTCUSDT',
      trade_id: '1',
      price: 100,
      quantity: 2,
      side: 'SELL',
    });
    assert.equal(got[1].side, 'BUY');
    assert.equal(got[2].side, 'BUY');
    assert.equal(got[2].trade_id, 't3');
    // No usable timestamp: the recorder's clock.
    assert.equal(got[3].side, null);
    assert.deepEqual(got[3].ts, new Date(T));
  });

  test('only the fills the previous list did not have are pushed, with every column', () => {
    const { recorder, rows } = setup();
    const fill = (id: string, extra: Record<string, Json> = {}): Json => ({
      fill_id: id,
      order_id: 'o1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      price: 97000.5,
      quantity: 0.01,
      fee: 0.02,
      timestamp: T - 100,
      ...extra,
    });
    const before = [fill('f1')];
    recorder.written('fills', 'BTCUSDT', [fill('f2', { pnl: -3, order_id: null }), fill('f1')], before);
    assert.deepEqual(rows('fills'), [
      {
        ts: new Date(T - 100),
        symbol: 'BTCUSDT',
        fill_id: 'f2',
        order_id: null,
        side: 'BUY',
        price: 97000.5,
        quantity: 0.01,
        fee: 0.02,
        pnl: -3,
      },
    ]);
    // A removal (the symbol forgotten) and a value that is no list push nothing.
    recorder.written('fills', 'BTCUSDT', undefined, before);
    recorder.written('fills', 'BTCUSDT', { fill_id: 'f9' }, before);
    assert.equal(rows('fills').length, 0);
  });
});

describe('HistoryRecorder: orders', () => {
  const order = (state: string, filled: number, extra: Record<string, Json> = {}): Json => ({
    order_id: 'o1',
    symbol: 'BTCUSDT',
    side: 'BUY',
    type: 'LIMIT',
    state,
    price: 100,
    quantity: 2,
    filled_quantity: filled,
    updated_at: T - 1000,
    ...extra,
  });

  test('an event when the order is new, and when its state or filled quantity changes; none when re-stated', () => {
    const { recorder, rows } = setup();
    const placed = order('NEW', 0);
    recorder.written('orders', 'o1', placed, undefined);
    // A poll re-stating it (another time, another field): no event.
    const restated = order('NEW', 0, { updated_at: T - 500, note: 'polled' });
    recorder.written('orders', 'o1', restated, placed);
    const partial = order('PARTIALLY_FILLED', 0.5, { updated_at: T - 400, average_price: 99.5 });
    recorder.written('orders', 'o1', partial, restated);
    const more = order('PARTIALLY_FILLED', 1.5, { updated_at: T - 300 });
    recorder.written('orders', 'o1', more, partial);
    const filled = order('FILLED', 1.5, { updated_at: T - 200 });
    recorder.written('orders', 'o1', filled, more);
    // Its removal after the terminal retention: no event.
    recorder.written('orders', 'o1', undefined, filled);
    const events = rows('orders');
    assert.deepEqual(
      events.map((e) => [e.state, e.filled_quantity, e.ts.getTime()]),
      [
        ['NEW', 0, T - 1000],
        ['PARTIALLY_FILLED', 0.5, T - 400],
        ['PARTIALLY_FILLED', 1.5, T - 300],
        ['FILLED', 1.5, T - 200],
      ],
    );
    assert.deepEqual(events[1], {
      ts: new Date(T - 400),
      order_id: 'o1',
      symbol: 'BTCUSDT',
      state: 'PARTIALLY_FILLED',
      side: 'BUY',
      type: 'LIMIT',
      price: 100,
      quantity: 2,
      filled_quantity: 0.5,
      average_price: 99.5,
    });
  });

  test('time from updated_at, else created_at, else the clock; no filled quantity is 0', () => {
    const { recorder, rows } = setup();
    recorder.written('orders', 'a', order('NEW', 0, { order_id: 'a', updated_at: null }), undefined);
    recorder.written(
      'orders',
      'b',
      { order_id: 'b', symbol: 'X', state: 'NEW', created_at: '2026-03-01T11:00:00Z' },
      undefined,
    );
    recorder.written('orders', 'c', { order_id: 'c', symbol: 'X', state: 'NEW' }, undefined);
    const [a, b, c] = rows('orders');
    assert.deepEqual(a.ts, new Date(T));
    assert.deepEqual(b.ts, new Date('2026-03-01T11:00:00Z'));
    assert.deepEqual(c.ts, new Date(T));
    assert.deepEqual(
      [b.filled_quantity, b.side, b.type, b.price, b.quantity, b.average_price],
      [0, null, null, null, null, null],
    );
    // A missing filled quantity and a 0 are the same: no event.
    recorder.written(
      'orders',
      'c',
      { order_id: 'c', symbol: 'X', state: 'NEW', filled_quantity: 0 },
      {
        order_id: 'c',
        symbol: 'X',
        state: 'NEW',
      },
    );
    assert.equal(rows('orders').length, 0);
  });
});

describe('HistoryRecorder: alerts', () => {
  const alert = (id: string, extra: Record<string, Json> = {}): Json => ({
    id,
    source: 'account_monitor',
    type: 'margin_ratio',
    severity: 'WARNING',
    symbol: 'BTCUSDT',
    message: 'margin ratio high',
    value: 0.85,
    threshold: 0.8,
    timestamp: T - 10,
    ...extra,
  });

  test('a new alert is pushed once; a change of a stored one or its removal is not', () => {
    const { recorder, rows } = setup();
    recorder.written('alerts', 'a1', alert('a1'), undefined);
    recorder.written('alerts', 'a1', alert('a1', { message: 'again' }), alert('a1'));
    recorder.written('alerts', 'a1', undefined, alert('a1'));
    recorder.written('alerts', 'a2', alert('a2', { symbol: null, value: null, message: null }), undefined);
    const got = rows('alerts');
    assert.deepEqual(got[0], {
      ts: new Date(T - 10),
      id: 'a1',
      source: 'account_monitor',
      type: 'margin_ratio',
      severity: 'WARNING',
      symbol: 'BTCUSDT',
      message: 'margin ratio high',
      value: 0.85,
      threshold: 0.8,
    });
    assert.equal(got.length, 2);
    assert.deepEqual([got[1].id, got[1].symbol, got[1].value, got[1].message], ['a2', null, null, '']);
  });
});

describe('HistoryRecorder: account', () => {
  test('a row at each change of sign of unrealized_pnl, none otherwise', () => {
    const { clock, recorder, rows } = setup();
    const account = (pnl: number | undefined): Json => ({
      total_balance: 1000,
      ...(pnl === undefined ? {} : { unrealized_pnl: pnl }),
    });
    // The first account (nothing before): no row; the sampling timer takes it.
    recorder.written('account', SINGLE, account(5), undefined);
    recorder.written('account', SINGLE, account(7), account(5));
    assert.equal(rows('account').length, 0);
    clock.now = T + 1;
    recorder.written('account', SINGLE, account(-2), account(7));
    clock.now = T + 2;
    recorder.written('account', SINGLE, account(-3), account(-2));
    clock.now = T + 3;
    recorder.written('account', SINGLE, account(0), account(-3));
    clock.now = T + 4;
    recorder.written('account', SINGLE, account(undefined), account(0));
    clock.now = T + 5;
    recorder.written('account', SINGLE, account(4), account(undefined));
    assert.deepEqual(
      rows('account').map((r) => [r.ts.getTime(), r.unrealized_pnl, r.equity]),
      [
        [T + 1, -2, 998],
        [T + 3, 0, 1000],
        [T + 5, 4, 1004],
      ],
    );
  });

  test('sampleAccount: equity from the account, else balance plus unrealized PnL, else null', () => {
    const { clock, recorder, rows } = setup();
    recorder.sampleAccount({ total_balance: 1000, unrealized_pnl: -25.5, equity: 2000 });
    clock.now = T + 10_000;
    recorder.sampleAccount({ total_balance: 1000, unrealized_pnl: -25.5 });
    recorder.sampleAccount({ total_balance: 1000 });
    recorder.sampleAccount({ unrealized_pnl: 3 });
    recorder.sampleAccount({ total_balance: '1000', unrealized_pnl: 1 });
    // No account yet, or one that is no object: no row.
    recorder.sampleAccount(undefined);
    recorder.sampleAccount([1]);
    assert.deepEqual(rows('account'), [
      { ts: new Date(T), total_balance: 1000, equity: 2000, unrealized_pnl: -25.5 },
      { ts: new Date(T + 10_000), total_balance: 1000, equity: 974.5, unrealized_pnl: -25.5 },
      { ts: new Date(T + 10_000), total_balance: 1000, equity: null, unrealized_pnl: null },
      { ts: new Date(T + 10_000), total_balance: null, equity: null, unrealized_pnl: 3 },
      { ts: new Date(T + 10_000), total_balance: null, equity: null, unrealized_pnl: 1 },
    ]);
  });

  test('writes to topics history does not keep (orderbook, positions, strategies, risk) push nothing', () => {
    const { recorder, queue } = setup();
    recorder.written('orderbook', 'BTCUSDT', { bids: [], asks: [] }, undefined);
    recorder.written('positions', 'BTCUSDT', { symbol: 'BTCUSDT', quantity: 1 }, undefined);
    recorder.written('strategies', 's1', { id: 's1' }, undefined);
    recorder.written('risk', SINGLE, { leverage: 2 }, undefined);
    assert.equal(queue.total, 0);
  });
});

describe('HistoryRecorder: end to end from Ingest and StateStore', () => {
  function pipeline() {
    const clock = { now: T };
    const state = new StateStore({ now: () => clock.now });
    const ingest = new Ingest(state, {
      orderbookDepth: 20,
      tradesKept: 5,
      fillsKept: 5,
      alertsKept: 5,
      terminalOrderRetention: 60_000,
      maxMessageSize: 1 << 20,
      now: () => clock.now,
    });
    const queue = new HistoryQueue(10_000);
    const recorder = new HistoryRecorder(queue, () => clock.now);
    const stop = state.observeWrites(recorder.written.bind(recorder));
    const send = (channel: string, payload: unknown, source: 'redis' | 'nats' = 'redis') =>
      ingest.handleMessage(channel, JSON.stringify(payload), source);
    const rows = (kind: HistoryKind): HistoryRow[] => queue.take(kind, queue.length(kind));
    return { clock, state, ingest, queue, recorder, stop, send, rows };
  }

  test('market data messages become one row per symbol and second', () => {
    const { clock, recorder, send, rows } = pipeline();
    send('market_data:btcusdt', { last_price: '97000.5', bid_price: 97000, ask_price: 97001 });
    clock.now = T + 300;
    send('market_data:btcusdt', { last_price: 97010 });
    clock.now = T + 600;
    send('market_data:btcusdt', { last_price: 96990, bid_price: 96989 });
    send('market_data:ethusdt', { last_price: 3000 });
    clock.now = T + 1100;
    send('market_data:btcusdt', { last_price: 97005 });
    // The new second of BTCUSDT pushed its previous one; ETHUSDT waits for closeSeconds.
    assert.deepEqual(rows('market_data'), [
      {
        ts: new Date(T),
        symbol: 'BTCUSDT',
        open: 97000.5,
        high: 97010,
        low: 96990,
        close: 96990,
        bid: 96989,
        ask: 97001,
        updates: 3,
      },
    ]);
    recorder.closeSeconds();
    assert.deepEqual(
      rows('market_data').map((r) => [r.symbol, r.ts.getTime(), r.updates]),
      [['ETHUSDT', T, 1]],
    );
  });

  test('trades and fills: each new one once, a duplicate delivery none', () => {
    const { send, rows } = pipeline();
    const trade = (id: number, ms: number) => ({ trade_id: id, price: '100.5', quantity: 2, timestamp: ms });
    send('trades:btcusdt', trade(1, T - 3000));
    send('trades:btcusdt', trade(2, T - 1000));
    send('trades:btcusdt', trade(2, T - 1000));
    send('trades:btcusdt', trade(3, T - 2000));
    assert.deepEqual(
      rows('trades').map((r) => [r.trade_id, r.symbol, r.price, r.ts.getTime()]),
      [
        ['1', 'BTCUSDT', 100.5, T - 3000],
        ['2', 'BTCUSDT', 100.5, T - 1000],
        ['3', 'BTCUSDT', 100.5, T - 2000],
      ],
    );
    const fill = { fill_id: 'f1', symbol: 'btcusdt', side: 'SELL', price: '1.5', quantity: 3, timestamp: T };
    send('fills', fill, 'nats');
    send('fills', fill, 'nats');
    // Sent with `id`: stored as fill_id.
    send('fills', { ...fill, fill_id: undefined, id: 'f2', timestamp: T + 1 }, 'nats');
    assert.deepEqual(
      rows('fills').map((r) => [r.fill_id, r.symbol, r.side, r.price, r.ts.getTime()]),
      [
        ['f1', 'BTCUSDT', 'SELL', 1.5, T],
        ['f2', 'BTCUSDT', 'SELL', 1.5, T + 1],
      ],
    );
  });

  test('orders: new, filled, re-stated, stale; one event per change', () => {
    const { send, rows } = pipeline();
    const order = (state: string, filled: number, updated: number) => ({
      order_id: 'o-1',
      symbol: 'btcusdt',
      side: 'BUY',
      type: 'LIMIT',
      state,
      quantity: '2',
      price: 100,
      filled_quantity: filled,
      updated_at: updated,
    });
    send('orders:updates', order('new', 0, T - 3000));
    send('orders:updates', order('NEW', 0, T - 2500));
    send('orders:updates', { order: order('PARTIALLY_FILLED', 1, T - 2000), update_type: 'FILL' });
    // Older than what the state holds: refused by ingest, no event.
    send('orders:updates', order('NEW', 0, T - 2900));
    send('orders:updates', order('FILLED', 2, T - 1000));
    assert.deepEqual(
      rows('orders').map((r) => [r.order_id, r.symbol, r.state, r.filled_quantity, r.ts.getTime()]),
      [
        ['o-1', 'BTCUSDT', 'NEW', 0, T - 3000],
        ['o-1', 'BTCUSDT', 'PARTIALLY_FILLED', 1, T - 2000],
        ['o-1', 'BTCUSDT', 'FILLED', 2, T - 1000],
      ],
    );
  });

  test('alerts: each new alert once, whichever source delivers it', () => {
    const { send, rows } = pipeline();
    const alert = {
      type: 'margin_ratio',
      severity: 'warning',
      symbol: 'BTCUSDT',
      message: 'margin ratio high',
      value: '0.85',
      threshold: 0.8,
      timestamp: '2026-03-01T12:00:00Z',
    };
    send('alerts', alert, 'nats');
    send('alerts', alert, 'redis');
    send('alerts', { ...alert, timestamp: '2026-03-01T12:00:01Z' }, 'nats');
    const got = rows('alerts');
    assert.deepEqual(
      got.map((r) => [r.source, r.severity, r.value, r.ts.getTime()]),
      [
        ['account_monitor', 'WARNING', 0.85, T],
        ['account_monitor', 'WARNING', 0.85, T + 1000],
      ],
    );
    assert.match(String(got[0].id), /^[0-9a-f]{20}$/);
    assert.notEqual(got[0].id, got[1].id);
  });

  test('account: a row when unrealized PnL changes sign; sampleAccount reads the state', () => {
    const { clock, state, recorder, send, rows } = pipeline();
    send('account:main', { total_balance: '1000', unrealized_pnl: 10 });
    send('account:main', { total_balance: '1000', unrealized_pnl: 12 });
    assert.equal(rows('account').length, 0);
    clock.now = T + 5000;
    send('account:main', { total_balance: '1000', unrealized_pnl: '-4.5' });
    assert.deepEqual(rows('account'), [
      { ts: new Date(T + 5000), total_balance: 1000, equity: 995.5, unrealized_pnl: -4.5 },
    ]);
    clock.now = T + 10_000;
    recorder.sampleAccount(state.get('account'));
    assert.deepEqual(rows('account'), [
      { ts: new Date(T + 10_000), total_balance: 1000, equity: 995.5, unrealized_pnl: -4.5 },
    ]);
  });

  test('the function observeWrites returns removes the recorder', () => {
    const { stop, send, queue, recorder, clock } = pipeline();
    stop();
    send('trades:btcusdt', { trade_id: 1, price: 1, quantity: 1, timestamp: T });
    send('market_data:btcusdt', { last_price: 1 });
    clock.now = T + 5000;
    recorder.closeSeconds();
    assert.equal(queue.total, 0);
  });
});
