/**
 * The trading system's own clients against the hub, over real sockets, each modelled from its source
 * (test/helpers/b25-web-model.ts: ui/web useWebSocket.ts and store/trading.ts; test/helpers/b25-tui-model.ts:
 * ui/terminal websocket.rs, types.rs, state.rs): they connect as they do (no protocol parameter, no token, their
 * own first message), and what they show is checked against what was published.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { type Stack, startStack, stopStack } from '../helpers/app.ts';
import { TUI_PATH, TUI_SUBSCRIBE, TuiModel } from '../helpers/b25-tui-model.ts';
import { checkFields, WEB_UI_PATH, WebUiModel } from '../helpers/b25-web-model.ts';
import { GrpcBackend } from '../helpers/backends-grpc.ts';
import { sourceConfig } from '../helpers/backends-poller.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/** A socket whose every text frame goes to a client model; `until` resolves when the model satisfies a check. */
class ModelledClient<M extends { receive(text: string): unknown }> {
  readonly ws: WebSocket;
  readonly model: M;
  private readonly waiters = new Set<() => void>();

  constructor(url: string, model: M, headers: Record<string, string> = {}) {
    this.model = model;
    this.ws = new WebSocket(url, { headers });
    this.ws.on('message', (data, binary) => {
      assert.equal(binary, false, 'the b25 clients read text frames only');
      this.model.receive(data.toString());
      for (const wake of [...this.waiters]) wake();
    });
  }

  async open(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    return this;
  }

  until(check: (model: M) => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (check(this.model)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const wake = () => {
        if (!check(this.model)) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
    });
  }

  close(): void {
    this.ws.close();
  }
}

const base = (stack: Stack) => stack.running.url.replace(/^http/, 'ws');

describe('the b25 web dashboard, token-less from an allowed address', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      auth: authOn({}, { anonymous: { enabled: true, role: 'trader', allowed_cidrs: ['127.0.0.1/32'] } }),
    });
    const { publisher } = stack;
    await publisher.publish(
      'market_data:BTCUSDT',
      JSON.stringify({ last_price: '64000.5', bid_price: 64000 }),
    );
    await publisher.publish(
      'orderbook:BTCUSDT',
      JSON.stringify({ bids: { '64000': 1 }, asks: { '64001': 2 } }),
    );
    await publisher.publish(
      'orders:x',
      JSON.stringify({
        order_id: 'o-1',
        symbol: 'BTCUSDT',
        side: 'BUY',
        type: 'LIMIT',
        state: 'NEW',
        quantity: 1,
        price: 63000,
        filled_quantity: 0,
        updated_at: 1_700_000_000,
      }),
    );
    await publisher.publish(
      'positions:x',
      JSON.stringify({
        symbol: 'ETHUSDT',
        side: 'SHORT',
        quantity: -2,
        entry_price: 3000,
        mark_price: 2990,
        unrealized_pnl: 20,
        liquidation_price: 4000,
        updated_at: 1_700_000_000,
      }),
    );
    await publisher.publish(
      'account:x',
      JSON.stringify({
        total_balance: 1000,
        available_balance: 800,
        unrealized_pnl: 20,
        updated_at: 1_700_000_000,
      }),
    );
    await publisher.publish(
      'trades:BTCUSDT',
      JSON.stringify({
        trade_id: 1,
        price: 64000,
        quantity: 0.1,
        timestamp: 1_700_000_000_000,
        is_buyer_maker: false,
      }),
    );
    // Everything published is in the state before the clients connect.
    await waitFor(() => stack.running.app.state.get('trades', 'BTCUSDT') !== undefined);
  });
  after(() => stopStack(stack));

  test('its snapshot fills the store: prices, book, orders, positions, account, trades, system health', async () => {
    const web = await new ModelledClient(`${base(stack)}${WEB_UI_PATH}`, new WebUiModel()).open();
    web.ws.send(web.model.subscribeMessage());
    await web.until((m) => m.systemHealth.length > 0 && m.trades.length > 0, 'the snapshot and its messages');
    const store = web.model;
    assert.deepEqual(store.parseErrors, []);
    assert.deepEqual(store.unknownTypes, []);
    assert.equal(store.marketData.get('BTCUSDT')?.last_price, 64000.5);
    assert.equal(store.orderbooks.get('BTCUSDT')?.bids[0].price, 64000);
    const order = store.orders.get('o-1');
    assert.deepEqual(checkFields('Order', order), [], JSON.stringify(order));
    assert.equal(order?.status, 'NEW');
    const position = store.positions.get('ETHUSDT');
    // leverage and margin have no source in the state: left out, never made up.
    assert.deepEqual(checkFields('Position', position), ['leverage', 'margin'], JSON.stringify(position));
    assert.equal(position?.side, 'SHORT');
    assert.equal(position?.size, 2);
    assert.equal(store.account?.balance, 1000);
    assert.equal(store.account?.equity, 1020, 'derived: total balance + unrealized PnL');
    assert.equal(store.trades[0].side, 'BUY');
    assert.deepEqual(
      store.systemHealth.map((entry) => [entry.service, entry.status]),
      [
        ['dashboard-server', 'healthy'],
        ['redis', 'healthy'],
      ],
    );

    // Prices follow; a filled order leaves; the latency is a number.
    await stack.publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: 64100 }));
    await web.until((m) => m.marketData.get('BTCUSDT')?.last_price === 64100, 'the new price');
    await stack.publisher.publish(
      'orders:x',
      JSON.stringify({ order_id: 'o-1', symbol: 'BTCUSDT', side: 'BUY', state: 'FILLED', quantity: 1 }),
    );
    await web.until((m) => !m.orders.has('o-1'), 'the filled order to leave');
    web.ws.send(web.model.heartbeat());
    await web.until((m) => m.actions.setLatency > 0, 'the pong');
    assert.ok(Number.isFinite(store.latency) && store.latency >= 0, `latency ${store.latency}`);
    assert.deepEqual(store.parseErrors, []);
    assert.deepEqual(store.unknownTypes, []);

    const debug = (await (await fetch(`${stack.running.url}/debug`)).json()) as {
      clients_by_protocol: Record<string, Record<string, number>>;
    };
    assert.equal(debug.clients_by_protocol.web['b25-web'], 1);
    const metrics = await (await fetch(`${stack.running.url}/metrics`)).text();
    assert.match(metrics, /dashboard_websocket_clients_total\{client_type="web",protocol="b25-web"\} 1/);
    web.close();
  });

  test('a refused message is not answered with a frame it cannot read', async () => {
    const web = await new ModelledClient(`${base(stack)}${WEB_UI_PATH}`, new WebUiModel()).open();
    web.ws.send(web.model.subscribeMessage());
    await web.until((m) => m.systemHealth.length > 0, 'the snapshot');
    const before = stack.running.app.hub.stats.unansweredRejections;
    web.ws.send(JSON.stringify({ type: 'launch', channels: [] }));
    web.ws.send(web.model.heartbeat());
    await web.until((m) => m.actions.setLatency > 0, 'the pong after it');
    assert.equal(stack.running.app.hub.stats.unansweredRejections, before + 1);
    assert.deepEqual(web.model.unknownTypes, []);
    web.close();
  });
});

describe('the b25 terminal UI, token-less', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      auth: authOn({}, { anonymous: { enabled: true, role: 'trader', allowed_cidrs: ['127.0.0.1/32'] } }),
      websocket: { ping_interval: '200ms' },
    });
  });
  after(() => stopStack(stack));

  test('its lists parse and hold the published position, orders and book; its unknown channels do not matter', async () => {
    const { publisher } = stack;
    const tui = await new ModelledClient(`${base(stack)}${TUI_PATH}`, new TuiModel()).open();
    tui.ws.send(TUI_SUBSCRIBE);
    await publisher.publish(
      'positions:x',
      JSON.stringify({
        symbol: 'BTCUSDT',
        quantity: 0.5,
        entry_price: 60000,
        mark_price: 61000,
        unrealized_pnl: 500,
      }),
    );
    for (const [id, state, type] of [
      ['a', 'NEW', 'LIMIT'],
      ['b', 'SUBMITTED', 'MARKET'],
      ['c', 'EXPIRED', 'POST_ONLY'],
      ['d', 'PARTIALLY_FILLED', 'STOP_LIMIT'],
    ])
      await publisher.publish(
        'orders:x',
        JSON.stringify({
          order_id: id,
          symbol: 'BTCUSDT',
          side: 'SELL',
          type,
          state,
          quantity: 1,
          ...(type === 'MARKET' ? {} : { price: 60500 }),
        }),
      );
    await publisher.publish(
      'orderbook:BTCUSDT',
      JSON.stringify({ bids: { '60000': 1.5 }, asks: { '60001': 2 } }),
    );
    await tui.until(
      (m) => m.positions.length === 1 && m.orders.length === 4 && m.orderbook !== null,
      'the position, four orders and the book',
    );
    const model = tui.model;
    assert.deepEqual(model.errors, []);
    assert.equal(model.positions[0].side, 'Long');
    assert.equal(model.positions[0].current_price, 61000);
    assert.deepEqual(model.orders.map((o) => [o.id, o.status, o.order_type]).sort(), [
      ['a', 'New', 'Limit'],
      ['b', 'New', 'Market'],
      ['c', 'Canceled', 'Limit'],
      ['d', 'PartiallyFilled', 'StopLimit'],
    ]);
    assert.deepEqual(model.orderbook?.bids, [[60000, 1.5]]);
    // Its own ping message comes with the WebSocket pings.
    await tui.until((m) => m.pings.length > 0, 'a ping message');
    assert.deepEqual(model.errors, []);
    const debug = (await (await fetch(`${stack.running.url}/debug`)).json()) as {
      clients_by_protocol: Record<string, Record<string, number>>;
    };
    assert.equal(debug.clients_by_protocol.tui['b25-tui'], 1, 'served at the terminal cadence');
    tui.close();
  });
});

describe('the web UI trading actions through the hub to order-execution', () => {
  let stack: Stack;
  let orderExecution: GrpcBackend;
  before(async () => {
    orderExecution = await GrpcBackend.start({
      GetOrders: () => ({ orders: [] }),
      CreateOrder: (call) => ({
        order_id: 'ord-1',
        client_order_id: call.request.client_order_id,
        state: 'NEW',
        timestamp: 1_700_000_000,
        error_message: '',
      }),
    });
    stack = await startStack({
      auth: authOn({}, { anonymous: { enabled: true, role: 'trader', allowed_cidrs: ['127.0.0.1/32'] } }),
      actions: { enabled: true },
      backend_services: { order_execution: sourceConfig(orderExecution.address) },
    });
  });
  after(async () => {
    await stopStack(stack);
    orderExecution.close();
  });

  async function webWith(token: string | undefined): Promise<ModelledClient<WebUiModel>> {
    const query = token === undefined ? WEB_UI_PATH : `${WEB_UI_PATH}&token=${token}`;
    const web = await new ModelledClient(`${base(stack)}${query}`, new WebUiModel()).open();
    web.ws.send(web.model.subscribeMessage());
    await web.until((m) => m.systemHealth.length > 0, 'the snapshot');
    return web;
  }

  const order = { symbol: 'BTCUSDT', side: 'BUY', type: 'LIMIT', price: 60000, quantity: 0.01 } as const;

  test("a trader's order reaches order-execution and its result comes back as an order message", async () => {
    const web = await webWith(signToken({ userId: 'trader-1', role: 'trader' }));
    web.ws.send(web.model.orderMessage(order));
    await web.until((m) => m.orders.has('ord-1'), 'the new order');
    const [call] = orderExecution.calls.filter((c) => c.method === 'CreateOrder');
    assert.equal(call.request.symbol, 'BTCUSDT');
    assert.equal(call.request.side, 'BUY');
    assert.equal(call.request.user_id, 'trader-1');
    assert.match(String(call.request.client_order_id), /\S/);
    assert.equal(web.model.orders.get('ord-1')?.status, 'NEW');
    web.close();
  });

  test("a viewer's order, or one from a connection without a token, is refused and nothing is sent", async () => {
    // Trading calls only: the poller's GetOrders may come at any time.
    const trades = () => orderExecution.calls.filter((c) => c.method !== 'GetOrders').length;
    const sent = trades();
    for (const token of [signToken({ userId: 'viewer-1', role: 'viewer' }), undefined]) {
      const web = await webWith(token);
      web.ws.send(web.model.orderMessage(order));
      await web.until((m) => [...m.orders.values()].some((o) => o.status === 'REJECTED'), 'the refusal');
      web.close();
    }
    assert.equal(trades(), sent, 'order-execution received nothing');
  });
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    assert.ok(Date.now() < deadline, 'timed out');
    // Redis delivers to another connection: nothing in this process to await but the next turn of the loop.
    await new Promise((resolve) => setImmediate(resolve));
  }
}
