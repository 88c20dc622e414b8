/**
 * The b25 clients' protocols as pure functions: what a frame becomes as a command, and what a view or a change
 * becomes as frames, checked against models of the clients' parsers (test/helpers/b25-*-model.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProtocolError } from '../../../src/hub/command.ts';
import type { ChangeView, Frames, Reply, SnapshotView } from '../../../src/hub/protocol.ts';
import { b25TuiProtocol, tuiOrder } from '../../../src/hub/protocols/b25-tui.ts';
import { b25WebProtocol, webAccount, webOrder } from '../../../src/hub/protocols/b25-web.ts';
import { Protocols } from '../../../src/hub/protocols/index.ts';
import type { JsonObject } from '../../../src/merge-patch.ts';
import { parseDashboardMessage } from '../../helpers/b25-tui-model.ts';
import { WEB_UI_CHANNELS } from '../../helpers/b25-web-model.ts';

const at = Date.parse('2026-12-03T10:00:00.000Z');
const buf = (message: unknown) => Buffer.from(JSON.stringify(message));
const frames = (result: Frames): JsonObject[] => {
  if (result === undefined) return [];
  const list = Buffer.isBuffer(result) ? [result] : [...(result as readonly Buffer[])];
  return list.map((frame) => JSON.parse(frame.toString()) as JsonObject);
};
const snapshotOf = (data: JsonObject): SnapshotView => ({
  sequence: 5,
  epoch: 'e',
  at,
  data,
  entry: () => undefined,
});
function changeOf(changes: JsonObject, now: JsonObject, before: JsonObject = {}): ChangeView {
  const read = (source: JsonObject) => (topic: string, key?: string) => {
    const section = source[topic];
    return key === undefined ? section : (section as JsonObject | undefined)?.[key];
  };
  return {
    sequence: 9,
    baseSequence: 5,
    at,
    changes,
    view: () => now,
    entry: read(now),
    before: read(before),
  };
}

const ORDER_STATES = [
  'NEW',
  'SUBMITTED',
  'PARTIALLY_FILLED',
  'FILLED',
  'CANCELED',
  'REJECTED',
  'EXPIRED',
  'ODD',
];
const ORDER_TYPES = ['LIMIT', 'MARKET', 'STOP_LIMIT', 'STOP_MARKET', 'POST_ONLY', undefined];

describe('b25-tui frames parse in a model of the terminal UI', () => {
  const tui = b25TuiProtocol(undefined);

  test('every order state and type, with and without a price, gives an orders list the client accepts', () => {
    const orders: JsonObject = {};
    let index = 0;
    for (const state of ORDER_STATES)
      for (const type of ORDER_TYPES) {
        const id = `o${index++}`;
        orders[id] = {
          order_id: id,
          symbol: 'BTCUSDT',
          side: index % 2 ? 'BUY' : 'SELL',
          state,
          ...(type === undefined ? {} : { type }),
          quantity: 1,
          ...(type === 'MARKET' ? {} : { price: 100 }),
          ...(index % 3 ? { updated_at: 1_700_000_000 } : {}),
        };
      }
    const [list] = frames(tui.snapshot(snapshotOf({ orders })));
    const parsed = parseDashboardMessage(JSON.stringify(list));
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
    assert.equal(parsed.message.type, 'orders');
    assert.equal((list.data as JsonObject[]).length, ORDER_STATES.length * ORDER_TYPES.length);
    const statuses = new Set((list.data as JsonObject[]).map((o) => o.status));
    assert.deepEqual([...statuses].sort(), ['Canceled', 'Filled', 'New', 'PartiallyFilled', 'Rejected']);
    const market = (list.data as JsonObject[]).find((o) => o.order_type === 'Market');
    assert.equal(market?.price, 0, 'a market order has no price: the documented neutral 0');
  });

  test('an id with a lone surrogate (which serde_json refuses) does not cost the whole list', () => {
    const [list] = frames(
      tui.snapshot(
        snapshotOf({ orders: { x: { order_id: '\ud800x', symbol: 'B', side: 'BUY', state: 'NEW' } } }),
      ),
    );
    const parsed = parseDashboardMessage(JSON.stringify(list));
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
  });

  test('an order with no side is left out; the rest of the list still parses', () => {
    assert.equal(tuiOrder({ order_id: 'x', symbol: 'B', state: 'NEW' }, at), undefined);
    const [list] = frames(
      tui.snapshot(
        snapshotOf({
          orders: {
            a: { order_id: 'a', symbol: 'B', state: 'NEW' },
            b: { order_id: 'b', symbol: 'B', side: 'sell', state: 'NEW' },
          },
        }),
      ),
    );
    assert.ok(parseDashboardMessage(JSON.stringify(list)).ok);
    assert.deepEqual(
      (list.data as JsonObject[]).map((o) => o.id),
      ['b'],
    );
  });

  test('positions, the configured book and the ping parse; lists are sent only when they changed', () => {
    const withBook = b25TuiProtocol('ethusdt');
    const data = {
      positions: {
        BTCUSDT: { symbol: 'BTCUSDT', quantity: -2, entry_price: 50, unrealized_pnl: -10 },
        ETHUSDT: { symbol: 'ETHUSDT', side: 'LONG', quantity: 1 },
      },
      orderbook: {
        BTCUSDT: { symbol: 'BTCUSDT', bids: [[1, 2]], asks: [[3, 4]] },
        ETHUSDT: { symbol: 'ETHUSDT', bids: [[10, 1]], asks: [[11, 1]], timestamp: 1_732_000_000_000_001 },
      },
    };
    const sent = frames(withBook.snapshot(snapshotOf(data)));
    for (const frame of sent)
      assert.ok(parseDashboardMessage(JSON.stringify(frame)).ok, JSON.stringify(frame));
    const positions = sent.find((f) => f.type === 'positions')!.data as JsonObject[];
    assert.deepEqual(positions[0], {
      symbol: 'BTCUSDT',
      size: 2,
      entry_price: 50,
      current_price: 50,
      side: 'Short',
      unrealized_pnl: -10,
      pnl_percent: -10,
    });
    assert.equal((sent.find((f) => f.type === 'orderbook')!.data as JsonObject).symbol, 'ETHUSDT');
    // The default is the first symbol with a book.
    assert.equal(
      (frames(tui.snapshot(snapshotOf(data))).find((f) => f.type === 'orderbook')!.data as JsonObject).symbol,
      'BTCUSDT',
    );
    // Another symbol's book changing sends nothing; a position changing sends the positions list only.
    assert.equal(withBook.change(changeOf({ orderbook: { BTCUSDT: { bids: [] } } }, data)), undefined);
    const changed = frames(withBook.change(changeOf({ positions: { ETHUSDT: { quantity: 3 } } }, data)));
    assert.deepEqual(
      changed.map((f) => f.type),
      ['positions'],
    );
    const ping = frames(withBook.heartbeat?.(at));
    assert.deepEqual(ping, [{ type: 'ping', timestamp: at }]);
    assert.ok(parseDashboardMessage(JSON.stringify(ping[0])).ok);
    // No reply of any kind: the client's parser has no variant for one.
    assert.equal(withBook.reply({ type: 'pong', at }), undefined);
    assert.equal(withBook.reply({ type: 'error', code: 'unknown_action', message: 'x' }), undefined);
  });

  test('its subscribe maps known channels, ignores the rest, and takes no trading action', () => {
    assert.deepEqual(
      tui.parse(
        buf({
          type: 'subscribe',
          channels: ['positions', 'orders', 'orderbook', 'fills', 'signals', 'alerts', 'nope'],
        }),
        false,
      ),
      { action: 'subscribe', subscriptions: ['positions', 'orders', 'orderbook'], lenient: true },
    );
    assert.deepEqual(tui.parse(buf({ type: 'pong', timestamp: 1 }), false), { action: 'none' });
    assert.throws(
      () => tui.parse(buf({ type: 'order', action: 'create', data: {} }), false),
      (error) => error instanceof ProtocolError && error.code === 'unknown_action',
    );
    assert.throws(() => tui.parse(Buffer.from('{'), false), ProtocolError);
    assert.throws(() => tui.parse(buf({ type: 'subscribe' }), true), ProtocolError);
  });
});

describe('b25-web frames', () => {
  test('the subscribe: system_health is the system topic, market_data brings the books, unknown names are ignored', () => {
    const command = b25WebProtocol.parse(
      buf({
        type: 'subscribe',
        // What the web UI subscribes to (useWebSocket.ts), and a name the hub does not know.
        channels: [...WEB_UI_CHANNELS, 'x'],
      }),
      false,
    );
    assert.deepEqual(command, {
      action: 'subscribe',
      subscriptions: [
        'market_data',
        'orderbook',
        'account',
        'positions',
        'orders',
        'trades',
        'strategies',
        'system',
      ],
      lenient: true,
    });
    assert.deepEqual(
      b25WebProtocol.parse(buf({ type: 'subscribe', channel: 'market_data:btcusdt' }), false),
      {
        action: 'subscribe',
        subscriptions: ['market_data:BTCUSDT'],
        lenient: true,
      },
    );
    assert.deepEqual(b25WebProtocol.parse(buf({ type: 'ping', timestamp: 42 }), false), {
      action: 'ping',
      echo: 42,
    });
    assert.deepEqual(b25WebProtocol.parse(buf({ type: 'ping', timestamp: 'soon' }), false), {
      action: 'ping',
    });
    assert.deepEqual(b25WebProtocol.parse(buf({ type: 'refresh' }), false), { action: 'resync' });
  });

  test('the pong echoes the ping time as a number; nothing else is answered but actions', () => {
    assert.deepEqual(frames(b25WebProtocol.reply({ type: 'pong', at, echo: 42 })), [
      { type: 'pong', timestamp: 42 },
    ]);
    for (const reply of [
      { type: 'subscribed', subscriptions: [], sequence: 1 },
      { type: 'error', code: 'invalid_message', message: 'x' },
      { type: 'authenticated', userId: 'u', expiresAt: undefined },
    ] satisfies Reply[])
      assert.equal(b25WebProtocol.reply(reply), undefined);
    const [rejected] = frames(
      b25WebProtocol.reply({
        type: 'action_result',
        result: { kind: 'order.create', outcome: 'rejected', clientOrderId: 'dash-1', reason: 'no', at },
      }),
    );
    assert.deepEqual(rejected, {
      type: 'order',
      data: {
        status: 'REJECTED',
        state: 'REJECTED',
        id: 'dash-1',
        client_order_id: 'dash-1',
        action: 'order.create',
        reason: 'no',
        timestamp: at,
      },
    });
  });

  test('records carry both spellings; what has no source is left out; equity is derived only from both parts', () => {
    const order = webOrder(
      {
        order_id: 7,
        symbol: 'B',
        side: 'buy',
        state: 'EXPIRED',
        type: 'POST_ONLY',
        filled_quantity: 0.5,
      },
      at,
    );
    assert.equal(order.id, '7');
    // No updated_at or created_at: the time it is sent (the UI's Orders page cannot format a missing one).
    assert.equal(order.timestamp, at);
    // A state the UI has no status for is NEW (it lists NEW among the open orders).
    assert.equal(webOrder({ order_id: 1, symbol: 'B', state: 'PENDING_CANCEL' }, at).status, 'NEW');
    assert.equal(order.status, 'CANCELED');
    assert.equal(order.state, 'EXPIRED');
    assert.equal(order.type, 'LIMIT');
    assert.equal(order.side, 'BUY');
    assert.equal(order.filledQuantity, 0.5);
    assert.equal(order.filled, 0.5);
    assert.equal('avgFillPrice' in order, false);
    assert.equal(webAccount({ total_balance: 100, unrealized_pnl: -5 }).equity, 95);
    assert.equal('equity' in webAccount({ total_balance: 100 }), false);
    assert.equal(webAccount({ total_balance: 100, equity: 7 }).equity, 7);
  });

  test('a change: whole market entries in one update, a message per order, position and new trade', () => {
    const now = {
      market_data: { BTC: { symbol: 'BTC', last_price: 2, bid_price: 1 } },
      orders: { a: { order_id: 'a', symbol: 'BTC', state: 'FILLED' } },
      trades: {
        BTC: [
          { trade_id: 3, price: 1, quantity: 1, timestamp: 3 },
          { trade_id: 2, price: 1, quantity: 1, timestamp: 2 },
          { trade_id: 1, price: 1, quantity: 1, timestamp: 1 },
        ],
      },
    };
    const before = {
      trades: { BTC: [{ trade_id: 1, price: 1, quantity: 1, timestamp: 1 }] },
      positions: { ETH: { symbol: 'ETH', quantity: -1 } },
    };
    const sent = frames(
      b25WebProtocol.change(
        changeOf(
          {
            market_data: { BTC: { last_price: 2 }, GONE: null },
            orders: { a: { state: 'FILLED' }, b: null },
            positions: { ETH: null },
            trades: { BTC: [] },
          },
          now,
          before,
        ),
      ),
    );
    assert.deepEqual(
      sent.map((f) => f.type),
      ['update', 'order', 'order', 'position', 'trade', 'trade'],
    );
    assert.deepEqual((sent[0].changes as JsonObject).market_data, {
      BTC: { symbol: 'BTC', last_price: 2, bid_price: 1, bid: 1 },
    });
    assert.equal((sent[1].data as JsonObject).status, 'FILLED');
    assert.deepEqual(sent[2].data, { id: 'b', order_id: 'b', status: 'CANCELED' });
    assert.deepEqual(sent[3].data, { symbol: 'ETH', side: 'SHORT', size: 0, quantity: 0, timestamp: at });
    assert.deepEqual(
      sent.slice(4).map((f) => (f.data as JsonObject).id),
      ['2', '3'],
    );
  });

  test('the first message chooses: the type form selects b25-web with ?type=web, b25-tui otherwise', () => {
    const protocols = new Protocols({});
    const subscribe = buf({ type: 'subscribe', channels: ['orders'] });
    assert.equal(protocols.chosenBy(subscribe, false, 'web', true)?.protocol.name, 'b25-web');
    assert.deepEqual(
      { ...protocols.chosenBy(subscribe, false, 'web', false), protocol: undefined },
      { protocol: undefined, type: 'tui' },
    );
    assert.equal(protocols.chosenBy(subscribe, false, 'tui', true)?.protocol.name, 'b25-tui');
    assert.equal(
      protocols.chosenBy(buf({ action: 'subscribe', subscriptions: [] }), false, 'web', true),
      undefined,
    );
    assert.equal(
      protocols.chosenBy(subscribe, true, 'web', true),
      undefined,
      'binary frames keep the hub protocol',
    );
    assert.equal(protocols.chosenBy(Buffer.from('not json'), false, 'web', true), undefined);
    assert.equal(
      protocols.chosenBy(buf({ type: 'order', action: 'create' }), false, 'web', true)?.protocol.name,
      'b25-web',
    );
  });
});
