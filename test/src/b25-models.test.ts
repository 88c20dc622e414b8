/**
 * Unit tests of the two b25 client models themselves (test/helpers/b25-web-model.ts, b25-tui-model.ts), on
 * hand-written frames, so that a model that drifts from its client's source is caught here and not taken
 * for a hub bug. The TUI parser's expectations were checked against the real thing: the b25 `types.rs` and
 * `DashboardMessage` compiled with serde 1.0 derive, serde_json 1.0 and chrono 0.4.45.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type DashboardMessage,
  parseChronoDateTime,
  parseDashboardMessage,
  TUI_PATH,
  TUI_SUBSCRIBE,
  TuiModel,
} from '../helpers/b25-tui-model.ts';
import { checkFields, WEB_UI_PATH, WebUiModel } from '../helpers/b25-web-model.ts';

const NOW = 1_780_000_000_000;

function webModel(): WebUiModel {
  return new WebUiModel({ now: () => NOW });
}

function send(model: WebUiModel, message: unknown): void {
  model.receive(JSON.stringify(message));
}

const webOrder = {
  id: 'o-1',
  symbol: 'BTCUSDT',
  side: 'BUY',
  type: 'LIMIT',
  status: 'NEW',
  price: 50_000,
  quantity: 0.5,
  filledQuantity: 0,
  timestamp: NOW - 1000,
};

describe('WebUiModel: what useWebSocket.ts handleMessage does', () => {
  test('pong with a numeric timestamp sets a finite latency; an ISO string gives NaN', () => {
    const model = webModel();
    send(model, { type: 'pong', timestamp: NOW - 42 });
    assert.equal(model.latency, 42);
    send(model, { type: 'pong', timestamp: new Date(NOW).toISOString() });
    assert.ok(Number.isNaN(model.latency), `latency ${model.latency}`);
    // JS subtraction coerces a numeric string
    send(model, { type: 'pong', timestamp: String(NOW - 7) });
    assert.equal(model.latency, 7);
    assert.equal(model.actions.setLatency, 3);
    assert.deepEqual(model.unknownTypes, []);
  });

  test('pong with a falsy or missing timestamp falls through to the switch as an unknown type', () => {
    const model = webModel();
    send(model, { type: 'pong', timestamp: 0 });
    send(model, { type: 'pong' });
    assert.equal(model.latency, 0);
    assert.equal(model.actions.setLatency, 0);
    assert.deepEqual(model.unknownTypes, ['pong', 'pong']);
  });

  test('an order with status FILLED or CANCELED removes the stored order; REJECTED is stored', () => {
    const model = webModel();
    send(model, { type: 'order', data: webOrder });
    send(model, { type: 'order', data: { ...webOrder, id: 'o-2' } });
    send(model, { type: 'order', data: { ...webOrder, id: 'o-3' } });
    assert.deepEqual([...model.orders.keys()], ['o-1', 'o-2', 'o-3']);
    send(model, { type: 'order', data: { ...webOrder, status: 'FILLED', filledQuantity: 0.5 } });
    send(model, { type: 'order', data: { ...webOrder, id: 'o-2', status: 'CANCELED' } });
    send(model, { type: 'order', data: { ...webOrder, id: 'o-3', status: 'REJECTED' } });
    assert.deepEqual([...model.orders.keys()], ['o-3']);
    assert.equal(model.orders.get('o-3')?.status, 'REJECTED');
    assert.equal(model.actions.removeOrder, 2);
  });

  test('an update replaces a market_data entry whole (no merge), stamped with the client clock', () => {
    const model = webModel();
    send(model, {
      type: 'snapshot',
      data: { market_data: { BTCUSDT: { last_price: 50_000, volume_24h: 1234, price_change_24h: 0.01 } } },
    });
    assert.deepEqual(model.marketData.get('BTCUSDT'), {
      last_price: 50_000,
      volume_24h: 1234,
      price_change_24h: 0.01,
      timestamp: NOW,
    });
    send(model, { type: 'update', changes: { market_data: { BTCUSDT: { last_price: 50_100 } } } });
    assert.deepEqual(model.marketData.get('BTCUSDT'), { last_price: 50_100, timestamp: NOW });
    assert.equal(model.debugInfo.lastPrice, 50_100);
    assert.equal(model.debugInfo.updateCount, 2);
  });

  test('update reads `changes` before `data`, accepts MarketData/Account keys, skips entries without a price', () => {
    const model = webModel();
    send(model, {
      type: 'incremental',
      changes: { MarketData: { ETHUSDT: { LastPrice: 3000 }, SOLUSDT: { bid: 1 } }, Account: { balance: 1 } },
      data: { market_data: { BTCUSDT: { last_price: 1 } } },
    });
    assert.deepEqual([...model.marketData.keys()], ['ETHUSDT']);
    // stored as sent: the pages read `last_price`, which is absent
    assert.equal(model.marketData.get('ETHUSDT')?.last_price, undefined);
    assert.deepEqual(model.account, { balance: 1 });
    // orders and positions in an update are never read
    send(model, {
      type: 'update',
      data: { orders: [webOrder], positions: { BTCUSDT: { symbol: 'BTCUSDT' } } },
    });
    assert.equal(model.orders.size, 0);
    assert.equal(model.positions.size, 0);
  });

  test('snapshot: books, account, orders only as an array, positions through Object.values', () => {
    const model = webModel();
    const book = { bids: [{ price: 1, volume: 2 }], asks: [{ price: 3, volume: 4 }] };
    send(model, {
      type: 'full_state',
      data: {
        market_data: { BTCUSDT: book, ETHUSDT: { last_price: 3000 } },
        account: { balance: 10 },
        orders: { 'o-1': webOrder },
        positions: {
          BTCUSDT: { symbol: 'BTCUSDT', side: 'LONG' },
          ETHUSDT: { symbol: 'ETHUSDT', side: 'SHORT' },
        },
      },
    });
    assert.deepEqual(model.orderbooks.get('BTCUSDT'), { ...book, symbol: 'BTCUSDT', timestamp: NOW });
    assert.equal(model.marketData.get('ETHUSDT')?.last_price, 3000);
    assert.deepEqual(model.account, { balance: 10 });
    assert.equal(model.orders.size, 0, 'orders keyed by id are ignored: Array.isArray');
    assert.deepEqual([...model.positions.keys()], ['BTCUSDT', 'ETHUSDT']);
    send(model, { type: 'snapshot', data: { positions: [{ symbol: 'SOLUSDT' }], orders: [webOrder] } });
    assert.deepEqual([...model.positions.keys()], ['BTCUSDT', 'ETHUSDT', 'SOLUSDT'], 'nothing is removed');
    assert.deepEqual([...model.orders.keys()], ['o-1']);
  });

  test('a throw half-way through a snapshot keeps what was applied before it, like the client', () => {
    const model = webModel();
    send(model, {
      type: 'snapshot',
      data: { orders: [webOrder, null, { ...webOrder, id: 'o-2' }], positions: [{ symbol: 'BTCUSDT' }] },
    });
    assert.deepEqual([...model.orders.keys()], ['o-1']);
    assert.equal(model.positions.size, 0);
    assert.equal(model.parseErrors.length, 1);
    assert.match(model.parseErrors[0].error, /null/);
  });

  test('bad JSON and a null frame are caught and recorded; unknown types are recorded; falsy data is ignored', () => {
    const model = webModel();
    model.receive('{"type":');
    model.receive('null');
    send(model, { type: 'subscribed', channels: ['orders'] });
    send(model, { type: 'order', data: null });
    send(model, { type: 'orderbook' });
    assert.equal(model.parseErrors.length, 2);
    assert.equal(model.parseErrors[0].text, '{"type":');
    assert.deepEqual(model.unknownTypes, ['subscribed']);
    assert.equal(model.orders.size, 0);
    assert.equal(model.orderbooks.size, 0);
    assert.equal(model.received, 5);
    assert.equal(model.handled.order, 1);
  });

  test('orderbook, position, trade, account and system_health messages', () => {
    const model = webModel();
    const book = { symbol: 'ETHUSDT', bids: [], asks: [], timestamp: 5 };
    send(model, { type: 'orderbook', data: book });
    assert.deepEqual(model.orderbooks.get('ETHUSDT'), book, 'stored as sent, no timestamp added');
    send(model, { type: 'position', data: { symbol: 'BTCUSDT', size: 1 } });
    send(model, { type: 'position', data: { symbol: 'BTCUSDT', size: 2 } });
    assert.deepEqual(model.positions.get('BTCUSDT'), { symbol: 'BTCUSDT', size: 2 });
    for (let i = 0; i < 105; i++) send(model, { type: 'trade', data: { id: `t-${i}` } });
    assert.equal(model.trades.length, 100);
    assert.equal(model.trades[0].id, 't-104');
    assert.equal(model.trades[99].id, 't-5');
    send(model, { type: 'account', data: { balance: 1, equity: 2 } });
    send(model, { type: 'account', data: { balance: 3 } });
    assert.deepEqual(model.account, { balance: 3 }, 'replaced, not merged');
    send(model, { type: 'system_health', data: [{ service: 'a' }, { service: 'b' }] });
    send(model, { type: 'system_health', data: [{ service: 'c' }] });
    assert.deepEqual(model.systemHealth, [{ service: 'c' }]);
  });

  test('close() clears what clearData clears; systemHealth and latency stay', () => {
    const model = webModel();
    send(model, { type: 'order', data: webOrder });
    send(model, { type: 'system_health', data: [{ service: 'a' }] });
    send(model, { type: 'pong', timestamp: NOW - 3 });
    model.close();
    assert.equal(model.orders.size, 0);
    assert.equal(model.account, null);
    assert.equal(model.systemHealth.length, 1);
    assert.equal(model.latency, 3);
  });

  test('the frames the client sends, byte for byte', () => {
    const model = webModel();
    assert.equal(WEB_UI_PATH, '/ws?type=web');
    assert.equal(
      model.subscribeMessage(),
      '{"type":"subscribe","channels":["market_data","account","positions","orders","trades","strategies","system_health"]}',
    );
    assert.equal(model.heartbeat(), `{"type":"ping","timestamp":${NOW}}`);
    assert.equal(
      model.orderMessage({ symbol: 'BTCUSDT', side: 'BUY', type: 'LIMIT', price: 1, quantity: 2 }),
      '{"type":"order","action":"create","data":{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","price":1,"quantity":2}}',
    );
    assert.equal(model.cancelMessage('o-1'), '{"type":"order","action":"cancel","data":{"orderId":"o-1"}}');
    assert.equal(
      model.closePositionMessage('BTCUSDT'),
      '{"type":"position","action":"close","data":{"symbol":"BTCUSDT"}}',
    );
    assert.equal(model.subscribeChannel('orders'), '{"type":"subscribe","channel":"orders"}');
    assert.equal(model.unsubscribeChannel('orders'), '{"type":"unsubscribe","channel":"orders"}');
  });
});

describe('checkFields: the required fields of types/index.ts', () => {
  test('a complete order passes; a missing or mistyped required field is named', () => {
    assert.deepEqual(checkFields('Order', webOrder), []);
    const { filledQuantity: _omitted, ...withoutFilled } = webOrder;
    assert.deepEqual(checkFields('Order', withoutFilled), ['filledQuantity']);
    assert.deepEqual(checkFields('Order', { ...webOrder, filledQuantity: '0', status: 'Filled' }), [
      'status',
      'filledQuantity',
    ]);
  });

  test('optional fields only with includeOptional; price levels are checked one by one', () => {
    const order = { ...webOrder, price: '50000' };
    assert.deepEqual(checkFields('Order', order), []);
    assert.deepEqual(checkFields('Order', order, { includeOptional: true }), ['price']);
    const book = { symbol: 'X', bids: [{ price: 1, volume: 2 }, [3, 4]], asks: {}, timestamp: 1 };
    assert.deepEqual(checkFields('OrderBook', book), ['bids[1].price', 'bids[1].volume', 'asks']);
    assert.deepEqual(checkFields('MarketData', { last_price: 1, bid: null }), []);
    assert.deepEqual(checkFields('MarketData', { last_price: 1, bid: null }, { includeOptional: true }), [
      'bid',
    ]);
  });

  test('a non-object lacks every required field', () => {
    assert.deepEqual(checkFields('SystemHealth', null), [
      'service',
      'status',
      'latency',
      'lastCheck',
      'uptime',
      'errorRate',
    ]);
    assert.deepEqual(checkFields('Position', { symbol: 'BTCUSDT', side: 'Long' }).slice(0, 2), [
      'side',
      'size',
    ]);
  });
});

const tuiOrder = {
  id: 'o-1',
  symbol: 'BTCUSDT',
  side: 'Buy',
  order_type: 'Limit',
  price: 50_000.5,
  size: 1,
  filled_size: 0,
  status: 'New',
  timestamp: '2026-12-03T10:00:00Z',
};

function frame(type: string, data: unknown): string {
  return JSON.stringify({ type, data });
}

function rejects(text: string, pattern: RegExp): void {
  const result = parseDashboardMessage(text);
  assert.equal(result.ok, false, `accepted: ${text}`);
  if (!result.ok) assert.match(result.error, pattern);
}

function accepts(text: string): DashboardMessage {
  const result = parseDashboardMessage(text);
  assert.ok(result.ok, result.ok ? '' : `rejected (${result.error}): ${text}`);
  return result.message;
}

describe('parseDashboardMessage: serde_json::from_str::<DashboardMessage>', () => {
  test('a valid orders list parses, typed as types.rs declares it', () => {
    const message = accepts(
      frame('orders', [tuiOrder, { ...tuiOrder, id: 'o-2', status: 'PartiallyFilled' }]),
    );
    assert.equal(message.type, 'orders');
    if (message.type !== 'orders') return;
    assert.equal(message.data.length, 2);
    assert.equal(message.data[0].price, 50_000.5);
    assert.equal(message.data[1].status, 'PartiallyFilled');
    assert.equal(message.data[0].timestamp.epochMillis, Date.UTC(2026, 11, 3, 10));
  });

  test('one bad element rejects the whole list: an unknown status, a null price, a numeric timestamp, BUY', () => {
    const second = (patch: object) => frame('orders', [tuiOrder, { ...tuiOrder, ...patch }]);
    rejects(second({ status: 'Submitted' }), /unknown variant `Submitted`/);
    rejects(second({ price: null }), /invalid type: null, expected f64/);
    rejects(second({ timestamp: 1_780_000_000_000 }), /invalid type: integer/);
    rejects(second({ side: 'BUY' }), /unknown variant `BUY`/);
    rejects(second({ status: 'new' }), /unknown variant `new`/);
    rejects(second({ price: '50000' }), /invalid type: string/);
    const { filled_size: _omitted, ...withoutFilled } = tuiOrder;
    rejects(frame('orders', [withoutFilled]), /missing field `filled_size`/);
  });

  test('unknown fields are ignored, at the top and inside, and dropped from the result', () => {
    const message = accepts(
      JSON.stringify({
        type: 'orders',
        seq: 7,
        channel: 'orders',
        data: [{ ...tuiOrder, quantity: 1, extra: {} }],
      }),
    );
    assert.equal(message.type, 'orders');
    if (message.type === 'orders') assert.equal(Object.hasOwn(message.data[0], 'extra'), false);
  });

  test('an unknown, missing, repeated or non-string `type` fails', () => {
    rejects(JSON.stringify({ type: 'pong', timestamp: 1 }), /unknown variant `pong`/);
    rejects(frame('snapshot', {}), /unknown variant `snapshot`/);
    rejects(frame('Orders', []), /unknown variant `Orders`/);
    rejects(JSON.stringify({ data: [] }), /missing field `type`/);
    rejects('{"type":"orders","type":"orders","data":[]}', /duplicate field `type`/);
    rejects('{"type":1,"data":[]}', /invalid type/);
    rejects('"orders"', /invalid type/);
    rejects('{"type":"orders","data":[],"data":[]}', /duplicate field `data`/);
    rejects('{"type":"orders","data":[]} x', /trailing characters/);
  });

  test('f64 takes any JSON number, never a string or null; i64 only an integer literal in range', () => {
    accepts(
      frame('positions', [
        {
          symbol: 'X',
          size: 1,
          entry_price: 2,
          current_price: -3,
          side: 'Long',
          unrealized_pnl: 0,
          pnl_percent: 1e-3,
        },
      ]),
    );
    assert.deepEqual(accepts('{"type":"ping","timestamp":1780000000000}'), {
      type: 'ping',
      timestamp: 1780000000000,
    });
    accepts('{"type":"ping","timestamp":-9223372036854775808}');
    rejects('{"type":"ping","timestamp":9223372036854775808}', /invalid value/);
    rejects('{"type":"ping","timestamp":5.0}', /floating point/);
    rejects('{"type":"ping","timestamp":1e3}', /floating point/);
    rejects('{"type":"ping","timestamp":-0}', /floating point/);
    rejects('{"type":"ping","timestamp":"5"}', /invalid type: string/);
  });

  test('DateTime<Utc>: RFC 3339 with Z or an offset; no offset, a short offset or a number fails', () => {
    const at = (timestamp: unknown) => frame('alerts', [{ id: 'a', level: 'Info', message: 'm', timestamp }]);
    accepts(at('2026-12-03T10:00:00Z'));
    accepts(at('2026-12-03T10:00:00.123+00:00'));
    accepts(at('2026-12-03 10:00:00 UTC'));
    rejects(at('2026-12-03T10:00:00'), /premature end of input/);
    rejects(at('2026-12-03T10:00:00+01'), /premature end of input/);
    rejects(at('2026-02-30T10:00:00Z'), /out of range/);
    rejects(at('2026-12-03T10:00:00+24:00'), /out of range/);
    rejects(at(1_780_000_000), /invalid type: integer/);
    const offset = parseChronoDateTime('2026-12-03T12:00:00.5+02:00');
    assert.equal(offset.epochMillis, Date.UTC(2026, 11, 3, 10, 0, 0, 500));
    assert.equal(parseChronoDateTime('2016-12-31T23:59:60Z').nanosecond, 1_000_000_000);
  });

  test('order book levels are [price, size] pairs: a 3-element array or an object fails', () => {
    const book = (bids: unknown) =>
      frame('orderbook', { symbol: 'BTCUSDT', bids, asks: [], timestamp: '2026-12-03T10:00:00Z' });
    const message = accepts(
      book([
        [50_000, 1],
        [49_999, 2.5],
      ]),
    );
    if (message.type === 'orderbook')
      assert.deepEqual(message.data.bids, [
        [50_000, 1],
        [49_999, 2.5],
      ]);
    rejects(book([[50_000, 1, 0]]), /invalid length 3/);
    rejects(book([{ price: 50_000, size: 1 }]), /invalid type: map/);
    rejects(book([[50_000, '1']]), /invalid type: string/);
    // an array where the struct goes is serde's sequence form of the struct: its first element must be `symbol`
    rejects(
      frame('orderbook', [{ symbol: 'BTCUSDT', bids: [], asks: [], timestamp: '2026-12-03T10:00:00Z' }]),
      /invalid type: map, expected a string/,
    );
  });

  test('serde_json rules that hold even in ignored fields: overflowing numbers, lone surrogates, depth', () => {
    rejects('{"type":"ping","timestamp":1,"x":1e400}', /number out of range/);
    rejects('{"type":"ping","timestamp":1,"x":"\\ud800"}', /hex escape/);
    accepts('{"type":"ping","timestamp":1,"x":"\\ud83d\\ude00"}');
    accepts(`{"type":"ping","timestamp":1,"x":${'['.repeat(126)}${']'.repeat(126)}}`);
    rejects(`{"type":"ping","timestamp":1,"x":${'['.repeat(127)}${']'.repeat(127)}}`, /recursion limit/);
  });

  test('serde quirks the model keeps: the sequence forms and the single-key map form of a unit enum', () => {
    assert.deepEqual(accepts('["ping",5]'), { type: 'ping', timestamp: 5 });
    const message = accepts(frame('alerts', [['a', { Warning: null }, 'm', '2026-12-03T10:00:00Z']]));
    if (message.type === 'alerts') assert.equal(message.data[0].level, 'Warning');
    rejects(frame('alerts', [['a', 'Info', 'm']]), /invalid length 3/);
  });
});

describe('TuiModel: what state.rs keeps', () => {
  const fill = (id: string) => ({
    id,
    order_id: 'o-1',
    symbol: 'BTCUSDT',
    side: 'Sell',
    price: 1,
    size: 1,
    fee: 0,
    pnl: 0,
    timestamp: '2026-12-03T10:00:00Z',
  });

  test('lists replace, fills are pushed to the front one by one and capped, one order book only', () => {
    const tui = new TuiModel();
    tui.receive(frame('orders', [tuiOrder, { ...tuiOrder, id: 'o-2' }]));
    tui.receive(frame('orders', [{ ...tuiOrder, id: 'o-3' }]));
    assert.deepEqual(
      tui.orders.map((o) => o.id),
      ['o-3'],
    );
    tui.receive(frame('fills', [fill('f-1'), fill('f-2')]));
    assert.deepEqual(
      tui.fills.map((f) => f.id),
      ['f-2', 'f-1'],
    );
    tui.receive(
      frame(
        'fills',
        Array.from({ length: 60 }, (_, i) => fill(`g-${i}`)),
      ),
    );
    assert.equal(tui.fills.length, 50);
    assert.equal(tui.fills[0].id, 'g-59');
    const book = (symbol: string) => ({
      symbol,
      bids: [[1, 2]],
      asks: [],
      timestamp: '2026-12-03T10:00:00Z',
    });
    tui.receive(frame('orderbook', book('BTCUSDT')));
    tui.receive(frame('orderbook', book('ETHUSDT')));
    assert.equal(tui.orderbook?.symbol, 'ETHUSDT');
    tui.receive('{"type":"ping","timestamp":12}');
    assert.deepEqual(tui.pings, [12]);
    assert.equal(tui.accepted.orders, 2);
  });

  test('frames serde rejects are recorded and change nothing', () => {
    const tui = new TuiModel({ maxAlerts: 1 });
    tui.receive(frame('orders', [tuiOrder]));
    const bad = frame('orders', [{ ...tuiOrder, status: 'Submitted' }]);
    const result = tui.receive(bad);
    assert.equal(result.ok, false);
    assert.deepEqual(tui.rejected, [bad]);
    assert.equal(tui.errors.length, 1);
    assert.deepEqual(
      tui.orders.map((o) => o.id),
      ['o-1'],
    );
    const alert = (id: string) => ({ id, level: 'Error', message: 'm', timestamp: '2026-12-03T10:00:00Z' });
    tui.receive(frame('alerts', [alert('a-1'), alert('a-2')]));
    assert.deepEqual(
      tui.alerts.map((a) => a.id),
      ['a-2'],
    );
  });

  test('what the client sends and where', () => {
    assert.equal(TUI_PATH, '/ws');
    assert.equal(
      TUI_SUBSCRIBE,
      '{"type":"subscribe","channels":["positions","orders","orderbook","fills","signals","alerts"]}',
    );
  });
});
