import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { inspect } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { Principal } from '../../src/access.ts';
import { Actions, type ActionsOptions } from '../../src/actions/actions.ts';
import { GrpcOrderBackend } from '../../src/actions/order-backend.ts';
import { isActionKind, parseActionRequest } from '../../src/actions/request.ts';
import type { ActionKind, ActionRequest } from '../../src/actions/types.ts';
import { ConfigError } from '../../src/config/errors.ts';
import { configFromDocument } from '../../src/config/load.ts';
import { ProtocolError } from '../../src/hub/command.ts';
import { GrpcBackend, type GrpcCall, GrpcFailure, hangGrpc } from '../helpers/backends-grpc.ts';

/**
 * Trading actions without Fastify: the request parser, and the Actions class forwarding to a real in-process
 * gRPC server built from proto/order.proto, through the same GrpcOrderBackend the plugin uses.
 */

const TRADER: Principal = { userId: 'user-7', role: 'trader', expiresAt: undefined };
const VIEWER: Principal = { userId: 'user-8', role: 'viewer', expiresAt: undefined };
const TOKENLESS: Principal = { userId: 'anonymous', role: 'trader', expiresAt: undefined, tokenless: true };
const NOW = 1_700_000_000_000;
const API_KEY = 'order-execution-api-key-do-not-log';
const BREAKER = {
  error_threshold_percentage: 50,
  volume_threshold: 2,
  reset_timeout: 60_000,
  rolling_window: 10_000,
};

const LIMIT_BUY: ActionRequest = {
  kind: 'order.create',
  symbol: 'BTCUSDT',
  side: 'BUY',
  type: 'LIMIT',
  quantity: 0.5,
  price: 50_000,
};

// --- parseActionRequest ---

/** The ProtocolError `parseActionRequest(kind, data)` throws. */
function parseError(kind: ActionKind, data: unknown): ProtocolError {
  try {
    parseActionRequest(kind, data);
  } catch (error) {
    assert.ok(error instanceof ProtocolError, `expected a ProtocolError, got ${String(error)}`);
    assert.ok(!error.message.includes('\n'));
    return error;
  }
  assert.fail(`${kind} ${JSON.stringify(data)} was accepted`);
}

const ORDER = { symbol: 'BTCUSDT', side: 'BUY', type: 'LIMIT', quantity: 0.5, price: 50_000 };

describe('parseActionRequest', () => {
  test('an order as the web UI sends it', () => {
    assert.deepEqual(parseActionRequest('order.create', ORDER), LIMIT_BUY);
    assert.deepEqual(
      parseActionRequest('order.create', {
        symbol: 'ethusdt',
        side: 'SELL',
        type: 'STOP_LIMIT',
        quantity: 2,
        price: 3000,
        stopPrice: 3100,
        timeInForce: 'FOK',
      }),
      {
        kind: 'order.create',
        symbol: 'ETHUSDT',
        side: 'SELL',
        type: 'STOP_LIMIT',
        quantity: 2,
        price: 3000,
        stopPrice: 3100,
        timeInForce: 'FOK',
      },
    );
  });

  test('decimals as strings become numbers; null and absent optional fields are left out', () => {
    assert.deepEqual(
      parseActionRequest('order.create', {
        symbol: 'BTCUSDT',
        side: 'BUY',
        type: 'STOP_MARKET',
        quantity: '0.5',
        stopPrice: '49999.75',
        price: null,
        timeInForce: null,
      }),
      {
        kind: 'order.create',
        symbol: 'BTCUSDT',
        side: 'BUY',
        type: 'STOP_MARKET',
        quantity: 0.5,
        stopPrice: 49_999.75,
      },
    );
    assert.deepEqual(parseActionRequest('order.create', { ...ORDER, quantity: '1e-3', price: '50000' }), {
      ...LIMIT_BUY,
      quantity: 0.001,
    });
  });

  test('unknown fields are ignored, __proto__ included, and never copied', () => {
    const data = JSON.parse(
      '{"symbol":"BTCUSDT","side":"BUY","type":"MARKET","quantity":1,"__proto__":{"polluted":true},"userId":"admin","reduceOnly":true}',
    );
    const request = parseActionRequest('order.create', data);
    assert.deepEqual(request, {
      kind: 'order.create',
      symbol: 'BTCUSDT',
      side: 'BUY',
      type: 'MARKET',
      quantity: 1,
    });
    assert.equal(Object.getPrototypeOf(request), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('order.cancel and position.close', () => {
    assert.deepEqual(parseActionRequest('order.cancel', { orderId: 'ord-1' }), {
      kind: 'order.cancel',
      orderId: 'ord-1',
    });
    assert.deepEqual(parseActionRequest('order.cancel', { orderId: 'ord-1', symbol: 'btcusdt' }), {
      kind: 'order.cancel',
      orderId: 'ord-1',
      symbol: 'BTCUSDT',
    });
    assert.deepEqual(parseActionRequest('order.cancel', { orderId: 'ord-1', symbol: null }), {
      kind: 'order.cancel',
      orderId: 'ord-1',
    });
    assert.deepEqual(parseActionRequest('position.close', { symbol: 'eth-usd', side: 'LONG' }), {
      kind: 'position.close',
      symbol: 'ETH-USD',
    });
  });

  const INVALID: [ActionKind, unknown, RegExp][] = [
    ['order.create', null, /^order\.create: data must be an object$/],
    ['order.create', [ORDER], /data must be an object/],
    ['order.create', 'BUY 1 BTC', /data must be an object/],
    [
      'order.create',
      { ...ORDER, symbol: undefined },
      /^order\.create: symbol is required \(a symbol like BTCUSDT/,
    ],
    [
      'order.create',
      { ...ORDER, symbol: 'BTC/USDT' },
      /^order\.create: symbol must be a symbol like BTCUSDT/,
    ],
    ['order.create', { ...ORDER, symbol: 'X'.repeat(33) }, /symbol must be/],
    ['order.create', { ...ORDER, side: 'buy' }, /^order\.create: side must be one of BUY, SELL$/],
    ['order.create', { ...ORDER, side: undefined }, /side is required/],
    [
      'order.create',
      { ...ORDER, type: 'ICEBERG' },
      /type must be one of LIMIT, MARKET, STOP_LIMIT, STOP_MARKET/,
    ],
    ['order.create', { ...ORDER, quantity: undefined }, /quantity is required/],
    [
      'order.create',
      { ...ORDER, quantity: 0 },
      /^order\.create: quantity must be a finite number greater than 0/,
    ],
    ['order.create', { ...ORDER, quantity: -1 }, /quantity must be a finite number greater than 0/],
    ['order.create', { ...ORDER, quantity: '0.0' }, /quantity must be a finite number greater than 0/],
    ['order.create', { ...ORDER, quantity: '-2' }, /quantity must be a finite number greater than 0/],
    ['order.create', { ...ORDER, quantity: 'abc' }, /quantity must be a finite number greater than 0/],
    ['order.create', { ...ORDER, quantity: '1e400' }, /quantity must be a finite number greater than 0/],
    ['order.create', { ...ORDER, quantity: Number.POSITIVE_INFINITY }, /quantity must be/],
    ['order.create', { ...ORDER, quantity: Number.NaN }, /quantity must be/],
    ['order.create', { ...ORDER, quantity: '1'.repeat(65) }, /quantity must be/],
    ['order.create', { ...ORDER, quantity: true }, /quantity must be/],
    ['order.create', { ...ORDER, price: -5 }, /^order\.create: price must be a finite number greater than 0/],
    ['order.create', { ...ORDER, price: 'NaN' }, /price must be/],
    ['order.create', { ...ORDER, stopPrice: 0 }, /stopPrice must be/],
    ['order.create', { ...ORDER, price: undefined }, /^order\.create: price is required for a LIMIT order/],
    [
      'order.create',
      { ...ORDER, type: 'STOP_LIMIT', stopPrice: 1, price: undefined },
      /price is required for a STOP_LIMIT order/,
    ],
    ['order.create', { ...ORDER, type: 'STOP_LIMIT' }, /stopPrice is required for a STOP_LIMIT order/],
    [
      'order.create',
      { ...ORDER, type: 'STOP_MARKET', price: undefined },
      /stopPrice is required for a STOP_MARKET/,
    ],
    [
      'order.create',
      { ...ORDER, timeInForce: 'GTX' },
      /^order\.create: timeInForce must be one of GTC, IOC, FOK$/,
    ],
    ['order.cancel', {}, /^order\.cancel: orderId is required \(a string of 1 to 128 characters\)$/],
    ['order.cancel', { orderId: '' }, /^order\.cancel: orderId must be a string of 1 to 128 characters$/],
    ['order.cancel', { orderId: 'x'.repeat(129) }, /orderId must be/],
    ['order.cancel', { orderId: 42 }, /orderId must be/],
    ['order.cancel', { orderId: 'ord-1', symbol: 'BTC USDT' }, /^order\.cancel: symbol must be/],
    ['position.close', {}, /^position\.close: symbol is required/],
    ['position.close', { symbol: 7 }, /^position\.close: symbol must be/],
  ];
  for (const [kind, data, message] of INVALID) {
    test(`${kind} ${inspect(data, { breakLength: Number.POSITIVE_INFINITY })} is refused: ${message.source}`, () => {
      const error = parseError(kind, data);
      assert.equal(error.code, 'invalid_message');
      assert.match(error.message, message);
    });
  }

  test('an unknown kind is unknown_action', () => {
    const error = parseError('order.amend' as ActionKind, ORDER);
    assert.equal(error.code, 'unknown_action');
    assert.match(error.message, /unknown action "order\.amend"/);
    assert.equal(isActionKind('order.create'), true);
    assert.equal(isActionKind('toString'), false);
  });
});

// --- Actions against a real gRPC order-execution ---

let server: GrpcBackend;
let backend: GrpcOrderBackend;

before(async () => {
  server = await GrpcBackend.start();
  backend = new GrpcOrderBackend({ url: server.address, apiKey: API_KEY, timeout: 2000, breaker: BREAKER });
});
after(() => {
  backend?.close();
  server?.close();
});
beforeEach(() => {
  server.calls.length = 0;
  server.handlers = {
    CreateOrder: (call) => ({
      order_id: 'ord-42',
      client_order_id: call.request.client_order_id,
      state: 'NEW',
      timestamp: 1_700_000_000,
      error_message: '',
    }),
    CancelOrder: (call) => ({
      order_id: call.request.order_id,
      state: 'CANCELED',
      timestamp: 1_700_000_001,
      error_message: '',
    }),
  };
});

interface Harness {
  actions: Actions;
  audit: Record<string, unknown>[];
  clock: { now: number };
}

function harness(overrides: Partial<ActionsOptions> = {}): Harness {
  const audit: Record<string, unknown>[] = [];
  const clock = { now: NOW };
  let ids = 0;
  const actions = new Actions({
    enabled: true,
    roles: ['trader', 'admin'],
    rateLimit: { max: 100, window: 60_000 },
    timeout: 2000,
    now: () => clock.now,
    risk: () => ({ emergency_stop: { is_stopped: false } }),
    position: () => undefined,
    backend,
    audit: (line) => audit.push(line as Record<string, unknown>),
    newId: () => `dash-${String(++ids).padStart(16, '0')}`,
    ...overrides,
  });
  return { actions, audit, clock };
}

function onlyCall(method: 'CreateOrder' | 'CancelOrder'): GrpcCall {
  assert.deepEqual(
    server.calls.map((call) => call.method),
    [method],
  );
  return server.calls[0];
}

describe('Actions: forwarded to order-execution', () => {
  test('an accepted order: the request order-execution receives, the result, the audit line', async () => {
    const { actions, audit } = harness();
    const result = await actions.submit(TRADER, LIMIT_BUY);
    const call = onlyCall('CreateOrder');
    assert.deepEqual(call.request, {
      symbol: 'BTCUSDT',
      side: 'BUY',
      type: 'LIMIT',
      quantity: 0.5,
      price: 50_000,
      stop_price: 0,
      time_in_force: 'GTC',
      client_order_id: 'dash-0000000000000001',
      reduce_only: false,
      post_only: false,
      user_id: 'user-7',
    });
    assert.deepEqual(call.metadata.authorization, [`Bearer ${API_KEY}`]);
    assert.deepEqual(result, {
      kind: 'order.create',
      outcome: 'accepted',
      clientOrderId: 'dash-0000000000000001',
      orderId: 'ord-42',
      state: 'NEW',
      symbol: 'BTCUSDT',
      side: 'BUY',
      type: 'LIMIT',
      quantity: 0.5,
      price: 50_000,
      at: NOW,
    });
    assert.deepEqual(audit, [
      {
        user: 'user-7',
        role: 'trader',
        action: 'order.create',
        symbol: 'BTCUSDT',
        side: 'BUY',
        type: 'LIMIT',
        quantity: 0.5,
        price: 50_000,
        client_order_id: 'dash-0000000000000001',
        outcome: 'accepted',
        order_id: 'ord-42',
        state: 'NEW',
      },
    ]);
  });

  test('a MARKET order goes as IOC (order-execution refuses GTC for market orders); a given TIF is kept', async () => {
    const { actions } = harness({ newId: undefined });
    const market = await actions.submit(TRADER, {
      kind: 'order.create',
      symbol: 'ETHUSDT',
      side: 'SELL',
      type: 'MARKET',
      quantity: 3,
    });
    assert.equal(market.outcome, 'accepted');
    assert.equal(market.price, undefined);
    assert.match(market.clientOrderId ?? '', /^dash-[0-9a-f]{16}$/);
    await actions.submit(TRADER, { ...LIMIT_BUY, timeInForce: 'IOC' });
    await actions.submit(TRADER, { ...LIMIT_BUY, type: 'STOP_LIMIT', stopPrice: 49_000 });
    assert.deepEqual(
      server.calls.map((call) => [call.request.type, call.request.time_in_force, call.request.stop_price]),
      [
        ['MARKET', 'IOC', 0],
        ['LIMIT', 'IOC', 0],
        ['STOP_LIMIT', 'GTC', 49_000],
      ],
    );
    assert.equal(new Set(server.calls.map((call) => call.request.client_order_id)).size, 3);
  });

  test('a cancel: order id and symbol reach order-execution; the state it reports comes back', async () => {
    const { actions, audit } = harness();
    const result = await actions.submit(TRADER, {
      kind: 'order.cancel',
      orderId: 'ord-42',
      symbol: 'BTCUSDT',
    });
    assert.deepEqual(onlyCall('CancelOrder').request, { order_id: 'ord-42', symbol: 'BTCUSDT' });
    assert.deepEqual(result, {
      kind: 'order.cancel',
      outcome: 'accepted',
      orderId: 'ord-42',
      state: 'CANCELED',
      symbol: 'BTCUSDT',
      at: NOW,
    });
    assert.deepEqual(audit, [
      {
        user: 'user-7',
        role: 'trader',
        action: 'order.cancel',
        symbol: 'BTCUSDT',
        outcome: 'accepted',
        order_id: 'ord-42',
        state: 'CANCELED',
      },
    ]);
    await actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-43' });
    assert.deepEqual(server.calls[1].request, { order_id: 'ord-43', symbol: '' });
  });

  const CLOSES: [string, { side?: string; quantity?: number }, string, number][] = [
    ['LONG', { side: 'LONG', quantity: 0.25 }, 'SELL', 0.25],
    ['SHORT', { side: 'SHORT', quantity: 1.5 }, 'BUY', 1.5],
    ['short in lower case, negative size', { side: 'short', quantity: -1.5 }, 'BUY', 1.5],
    ['BUY', { side: 'BUY', quantity: 2 }, 'SELL', 2],
    ['SELL', { side: 'SELL', quantity: 2 }, 'BUY', 2],
    ['no side, positive quantity', { quantity: 4 }, 'SELL', 4],
    ['no side, negative quantity', { quantity: -4 }, 'BUY', 4],
    ['an unknown side: the sign of quantity', { side: 'BOTH', quantity: -0.1 }, 'BUY', 0.1],
  ];
  for (const [name, position, side, quantity] of CLOSES) {
    test(`position.close of a ${name} position: a reduce-only MARKET ${side} of ${quantity}`, async () => {
      const asked: string[] = [];
      const { actions } = harness({
        position: (symbol) => {
          asked.push(symbol);
          return position;
        },
      });
      const result = await actions.submit(TRADER, { kind: 'position.close', symbol: 'BTCUSDT' });
      assert.deepEqual(asked, ['BTCUSDT']);
      assert.deepEqual(onlyCall('CreateOrder').request, {
        symbol: 'BTCUSDT',
        side,
        type: 'MARKET',
        quantity,
        price: 0,
        stop_price: 0,
        time_in_force: 'IOC',
        client_order_id: 'dash-0000000000000001',
        reduce_only: true,
        post_only: false,
        user_id: 'user-7',
      });
      assert.equal(result.outcome, 'accepted');
      assert.equal(result.kind, 'position.close');
      assert.equal(result.side, side);
      assert.equal(result.quantity, quantity);
    });
  }

  test('position.close without an open position is rejected and nothing is sent', async () => {
    for (const position of [
      undefined,
      { side: 'LONG', quantity: 0 },
      { side: 'LONG' },
      { quantity: Number.NaN },
    ]) {
      const { actions, audit } = harness({ position: () => position });
      const result = await actions.submit(TRADER, { kind: 'position.close', symbol: 'ETHUSDT' });
      assert.deepEqual(result, {
        kind: 'position.close',
        outcome: 'rejected',
        reason: 'no open position for ETHUSDT',
        symbol: 'ETHUSDT',
        at: NOW,
      });
      assert.deepEqual(audit, [
        {
          user: 'user-7',
          role: 'trader',
          action: 'position.close',
          symbol: 'ETHUSDT',
          outcome: 'rejected',
          reason: 'no open position for ETHUSDT',
        },
      ]);
    }
    assert.equal(server.hits(), 0);
  });
});

describe('Actions: what order-execution answers', () => {
  test('an error_message is a rejection with that reason; the state is kept', async () => {
    server.handlers.CreateOrder = () => ({
      order_id: 'ord-9',
      client_order_id: '',
      state: 'REJECTED',
      timestamp: 1_700_000_000,
      error_message: 'order notional 5.00 below minimum 10.00',
    });
    const { actions, audit } = harness();
    const result = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(result.outcome, 'rejected');
    assert.equal(result.reason, 'order-execution rejected it: order notional 5.00 below minimum 10.00');
    assert.equal(result.state, 'REJECTED');
    assert.equal(result.orderId, 'ord-9');
    assert.equal(result.clientOrderId, 'dash-0000000000000001');
    assert.equal(audit[0].outcome, 'rejected');
    assert.equal(audit[0].reason, result.reason);
  });

  test('a long or multi-line error_message is cut to one bounded line', async () => {
    server.handlers.CreateOrder = () => ({
      order_id: '',
      client_order_id: '',
      state: 'REJECTED',
      timestamp: 0,
      error_message: `first line\n\tsecond ${'x'.repeat(1000)}`,
    });
    const { actions } = harness();
    const result = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(result.outcome, 'rejected');
    assert.equal(result.orderId, undefined);
    const reason = result.reason ?? '';
    assert.ok(reason.startsWith('order-execution rejected it: first line second xxx'), reason);
    assert.ok(reason.endsWith('…'));
    assert.ok(reason.length < 400);
  });

  test('state REJECTED without a message is a rejection too', async () => {
    server.handlers.CancelOrder = () => ({
      order_id: 'ord-1',
      state: 'REJECTED',
      timestamp: 0,
      error_message: '',
    });
    const { actions } = harness();
    const result = await actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-1' });
    assert.equal(result.outcome, 'rejected');
    assert.equal(result.reason, 'order-execution rejected it: state REJECTED');
    assert.equal(result.state, 'REJECTED');
  });

  test('a refusing gRPC status (the real service: INVALID_ARGUMENT, INTERNAL for a cancel) is a rejection', async () => {
    server.handlers.CreateOrder = () => {
      throw new GrpcFailure(grpc.status.INVALID_ARGUMENT, 'symbol DOGEUSDT not registered');
    };
    server.handlers.CancelOrder = () => {
      throw new GrpcFailure(grpc.status.INTERNAL, 'order not found: ord-404');
    };
    const failuresBefore = backend.breaker.stats.failures;
    const { actions } = harness();
    const create = await actions.submit(TRADER, { ...LIMIT_BUY, symbol: 'DOGEUSDT' });
    assert.equal(create.outcome, 'rejected');
    assert.equal(create.reason, 'order-execution rejected it: symbol DOGEUSDT not registered');
    const cancel = await actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-404' });
    assert.equal(cancel.outcome, 'rejected');
    assert.equal(cancel.reason, 'order-execution rejected it: order not found: ord-404');
    // Refusals are answers: they do not count against the breaker.
    assert.equal(backend.breaker.stats.failures, failuresBefore);
    assert.equal(backend.breakerState, 'closed');
  });

  test('a wrong api key is a rejection that names the key to check', async () => {
    server.handlers.CreateOrder = () => {
      throw new GrpcFailure(grpc.status.UNAUTHENTICATED, 'invalid api key');
    };
    const { actions } = harness();
    const result = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(result.outcome, 'rejected');
    assert.match(result.reason ?? '', /invalid api key \(check backend_services\.order_execution\.api_key\)/);
    assert.ok(!result.reason?.includes(API_KEY));
  });

  test('UNAVAILABLE is a failure: the order may or may not exist, clientOrderId finds it', async () => {
    server.handlers.CreateOrder = () => {
      throw new GrpcFailure(grpc.status.UNAVAILABLE, 'exchange connection lost');
    };
    const { actions } = harness();
    const result = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(result.outcome, 'failed');
    assert.equal(result.reason, 'order-execution unavailable: CreateOrder: exchange connection lost');
    assert.equal(result.clientOrderId, 'dash-0000000000000001');
  });

  test('a hanging order-execution: failed within the timeout, and the call is cancelled', async () => {
    server.handlers.CreateOrder = hangGrpc;
    const { actions, audit } = harness({ timeout: 300 });
    const started = performance.now();
    const result = await actions.submit(TRADER, LIMIT_BUY);
    const elapsed = performance.now() - started;
    assert.equal(result.outcome, 'failed');
    assert.equal(result.reason, 'order-execution unavailable: no answer within 300ms');
    assert.ok(elapsed >= 290 && elapsed < 1500, `took ${elapsed}ms`);
    // The server sees the client give up at the timeout (the backend's own deadline is 2s later): not left open.
    await onlyCall('CreateOrder').cancelled;
    const cancelledAfter = performance.now() - started;
    assert.ok(cancelledAfter < 1500, `cancelled after ${cancelledAfter}ms`);
    assert.equal(audit[0].outcome, 'failed');
    assert.equal(audit[0].client_order_id, 'dash-0000000000000001');
  });

  test('an unreachable order-execution is a failure', async () => {
    const gone = await GrpcBackend.start();
    gone.close();
    const unreachable = new GrpcOrderBackend({ url: gone.address, timeout: 2000, breaker: BREAKER });
    try {
      const { actions } = harness({ backend: unreachable });
      const result = await actions.submit(TRADER, LIMIT_BUY);
      assert.equal(result.outcome, 'failed');
      assert.match(result.reason ?? '', /^order-execution unavailable: CreateOrder: /);
    } finally {
      unreachable.close();
    }
  });

  test('failures open the breaker: then nothing is sent until it resets', async () => {
    const flaky = new GrpcOrderBackend({ url: server.address, timeout: 2000, breaker: BREAKER });
    try {
      server.handlers.CreateOrder = () => {
        throw new GrpcFailure(grpc.status.UNAVAILABLE, 'down');
      };
      const { actions } = harness({ backend: flaky });
      for (let i = 0; i < 2; i++) assert.equal((await actions.submit(TRADER, LIMIT_BUY)).outcome, 'failed');
      assert.equal(flaky.breakerState, 'open');
      const hits = server.hits();
      const result = await actions.submit(TRADER, LIMIT_BUY);
      assert.equal(result.outcome, 'failed');
      assert.equal(result.reason, 'order-execution unavailable: circuit open, no request sent');
      assert.equal(server.hits(), hits);
    } finally {
      flaky.close();
    }
  });
});

describe('Actions: refused by the hub, nothing sent', () => {
  const CASES: [string, Partial<ActionsOptions>, Principal, ActionRequest, string][] = [
    ['disabled', { enabled: false }, TRADER, LIMIT_BUY, 'actions are disabled (actions.enabled)'],
    [
      'a token-less connection, whatever its role',
      {},
      TOKENLESS,
      LIMIT_BUY,
      'a connection without a token cannot act; sign in',
    ],
    ['a role not in actions.roles', {}, VIEWER, LIMIT_BUY, 'role "viewer" may not act (actions.roles)'],
    [
      'the anonymous principal (role *)',
      {},
      { userId: 'anonymous', role: '*', expiresAt: undefined },
      { kind: 'order.cancel', orderId: 'ord-1' },
      'role "*" may not act (actions.roles)',
    ],
    [
      'no order_execution backend',
      { backend: undefined },
      TRADER,
      LIMIT_BUY,
      'no order-execution backend is configured',
    ],
    [
      'the emergency stop (an order)',
      { risk: () => ({ emergency_stop: { is_stopped: true } }) },
      TRADER,
      LIMIT_BUY,
      'the emergency stop is active: no new orders or position closes (cancels still allowed)',
    ],
    [
      'the emergency stop (a position close)',
      {
        risk: () => ({ emergency_stop: { is_stopped: true } }),
        position: () => ({ side: 'LONG', quantity: 1 }),
      },
      TRADER,
      { kind: 'position.close', symbol: 'BTCUSDT' },
      'the emergency stop is active: no new orders or position closes (cancels still allowed)',
    ],
  ];
  for (const [name, options, principal, request, reason] of CASES) {
    test(name, async () => {
      const { actions, audit } = harness(options);
      const result = await actions.submit(principal, request);
      assert.equal(result.outcome, 'rejected');
      assert.equal(result.reason, reason);
      assert.equal(result.at, NOW);
      assert.equal(server.hits(), 0);
      assert.equal(audit.length, 1);
      assert.equal(audit[0].outcome, 'rejected');
      assert.equal(audit[0].reason, reason);
      assert.equal(audit[0].client_order_id, undefined);
      assert.equal(actions.counts[request.kind].rejected, 1);
    });
  }

  test('the emergency stop still lets a cancel through', async () => {
    const { actions } = harness({ risk: () => ({ emergency_stop: { is_stopped: true } }) });
    const result = await actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-42' });
    assert.equal(result.outcome, 'accepted');
    assert.equal(onlyCall('CancelOrder').request.order_id, 'ord-42');
  });

  test('no risk section, or one without a stop, stops nothing', async () => {
    for (const risk of [
      undefined,
      null,
      'x',
      {},
      { emergency_stop: null },
      { emergency_stop: { is_stopped: 'yes' } },
    ]) {
      const { actions } = harness({ risk: () => risk });
      assert.equal((await actions.submit(TRADER, LIMIT_BUY)).outcome, 'accepted');
    }
    assert.equal(server.hits('CreateOrder'), 6);
  });

  test('the rate limit: max actions per window per user, then again in the next window', async () => {
    const { actions, clock } = harness({ rateLimit: { max: 2, window: 60_000 } });
    assert.equal((await actions.submit(TRADER, LIMIT_BUY)).outcome, 'accepted');
    assert.equal((await actions.submit(TRADER, LIMIT_BUY)).outcome, 'accepted');
    const limited = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(limited.outcome, 'rejected');
    assert.equal(limited.reason, 'too many actions: at most 2 per 60000ms (actions.rate_limit)');
    assert.equal(server.hits(), 2);
    // Another user has a window of their own.
    const other = { ...TRADER, userId: 'user-9' };
    assert.equal((await actions.submit(other, LIMIT_BUY)).outcome, 'accepted');
    clock.now += 59_999;
    assert.equal((await actions.submit(TRADER, LIMIT_BUY)).outcome, 'rejected');
    clock.now += 1;
    assert.equal((await actions.submit(TRADER, LIMIT_BUY)).outcome, 'accepted');
    assert.equal(server.hits(), 4);
  });

  test('rate windows are bounded: idle users are forgotten, the oldest go first when full', async () => {
    const { actions, clock } = harness({ enabled: true, backend: undefined, maxTrackedUsers: 3 });
    for (let i = 0; i < 5; i++) await actions.submit({ ...TRADER, userId: `user-${i}` }, LIMIT_BUY);
    assert.equal(actions.trackedUsers, 3);
    clock.now += 60_000;
    await actions.submit({ ...TRADER, userId: 'late' }, LIMIT_BUY);
    assert.equal(actions.trackedUsers, 1);
  });
});

describe('Actions: bookkeeping', () => {
  test('the audit line never holds a token or the api key', async () => {
    const withToken = { ...TRADER, token: 'eyJhbGciOiJIUzI1NiJ9.secret-token.sig' } as Principal;
    const { actions, audit } = harness();
    await actions.submit(withToken, LIMIT_BUY);
    server.handlers.CreateOrder = () => {
      throw new GrpcFailure(grpc.status.UNAVAILABLE, 'down');
    };
    await actions.submit(withToken, LIMIT_BUY);
    await actions.submit({ ...withToken, role: 'viewer' } as Principal, LIMIT_BUY);
    assert.equal(audit.length, 3);
    const text = JSON.stringify(audit);
    assert.ok(!text.includes('secret-token'));
    assert.ok(!text.includes(API_KEY));
    for (const line of audit) {
      assert.deepEqual(
        Object.keys(line).filter(
          (key) => !['user', 'role', 'action', 'outcome'].includes(key) && !(key in ALLOWED),
        ),
        [],
      );
    }
  });

  test('counts by kind and outcome', async () => {
    const { actions } = harness({
      position: (symbol) => (symbol === 'BTCUSDT' ? { side: 'LONG', quantity: 1 } : undefined),
    });
    await actions.submit(TRADER, LIMIT_BUY);
    await actions.submit(TRADER, LIMIT_BUY);
    await actions.submit(VIEWER, LIMIT_BUY);
    await actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-1' });
    await actions.submit(TRADER, { kind: 'position.close', symbol: 'BTCUSDT' });
    await actions.submit(TRADER, { kind: 'position.close', symbol: 'ETHUSDT' });
    server.handlers.CancelOrder = () => {
      throw new GrpcFailure(grpc.status.UNAVAILABLE, 'down');
    };
    await actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-2' });
    assert.deepEqual(actions.counts, {
      'order.create': { accepted: 2, rejected: 1, failed: 0 },
      'order.cancel': { accepted: 1, rejected: 0, failed: 1 },
      'position.close': { accepted: 1, rejected: 1, failed: 0 },
    });
  });

  test('submit never throws: a failing state callback is a failed action', async () => {
    const { actions, audit } = harness({
      risk: () => {
        throw new Error('state unavailable');
      },
    });
    const result = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(result.outcome, 'failed');
    assert.equal(result.reason, 'internal error: state unavailable');
    assert.equal(audit[0].outcome, 'failed');
    assert.equal(server.hits(), 0);
  });

  test('submit never throws: a throwing audit sink leaves the result and the count', async () => {
    const { actions } = harness({
      audit: () => {
        throw new Error('log stream closed');
      },
    });
    const result = await actions.submit(TRADER, LIMIT_BUY);
    assert.equal(result.outcome, 'accepted');
    assert.equal(actions.counts['order.create'].accepted, 1);
  });
});

const ALLOWED = {
  symbol: 1,
  side: 1,
  type: 1,
  quantity: 1,
  price: 1,
  reduce_only: 1,
  client_order_id: 1,
  order_id: 1,
  state: 1,
  reason: 1,
};

describe('config: actions', () => {
  const SECRET = { DASHBOARD_AUTH__JWT__SECRET: 'test-secret-of-at-least-thirty-two-bytes' };
  const fromDoc = (document: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
    configFromDocument(structuredClone(document), { ...SECRET, ...env });
  const configError = (fn: () => unknown): string => {
    try {
      fn();
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      assert.ok(!error.message.includes('\n'));
      return error.message;
    }
    assert.fail('no ConfigError');
  };

  test('defaults: off, traders, 10 a minute, 5s', () => {
    assert.deepEqual(fromDoc({}).actions, {
      enabled: false,
      roles: ['trader'],
      rate_limit: { max: 10, window: 60_000 },
      timeout: 5000,
    });
    const set = fromDoc({
      actions: {
        enabled: true,
        roles: ['trader', 'admin'],
        rate_limit: { max: 3, window: '10s' },
        timeout: '2s',
      },
      backend_services: { order_execution: { url: 'localhost:50051' } },
    }).actions;
    assert.deepEqual(set, {
      enabled: true,
      roles: ['trader', 'admin'],
      rate_limit: { max: 3, window: 10_000 },
      timeout: 2000,
    });
  });

  test('actions.enabled without backend_services.order_execution stops the service, naming actions.enabled', () => {
    assert.match(
      configError(() => fromDoc({ actions: { enabled: true } })),
      /^config: actions\.enabled is true but backend_services\.order_execution is not set/,
    );
    assert.match(
      configError(() => fromDoc({}, { DASHBOARD_ACTIONS__ENABLED: 'true' })),
      /actions\.enabled .*\(from DASHBOARD_ACTIONS__ENABLED\)/,
    );
  });

  test('bad values name their key', () => {
    assert.match(
      configError(() => fromDoc({ actions: { roles: [] } })),
      /actions\.roles/,
    );
    assert.match(
      configError(() => fromDoc({ actions: { roles: [''] } })),
      /actions\.roles/,
    );
    assert.match(
      configError(() => fromDoc({ actions: { rate_limit: { max: 0 } } })),
      /actions\.rate_limit\.max/,
    );
    assert.match(
      configError(() => fromDoc({ actions: { timeout: 'soon' } })),
      /actions\.timeout/,
    );
    assert.match(
      configError(() => fromDoc({ actions: { retries: 3 } })),
      /unknown key actions\.retries/,
    );
  });
});
