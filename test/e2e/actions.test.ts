import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Principal } from '../../src/access.ts';
import { ConfigError } from '../../src/config/errors.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { GrpcBackend } from '../helpers/backends-grpc.ts';
import { sourceConfig } from '../helpers/backends-poller.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * The actions plugin in the whole app: `app.actions` forwards to a real in-process order-execution (gRPC) with
 * the configured api key, reads positions and the emergency stop from the state, logs one audit line per action,
 * is counted in /metrics, and its client is closed with the app.
 */

const TRADER: Principal = { userId: 'user-7', role: 'trader', expiresAt: undefined };
const API_KEY = 'order-execution-key-for-the-actions-plugin';

let redis: TestRedis;
let orderExecution: GrpcBackend;

before(async () => {
  redis = await TestRedis.start();
  orderExecution = await GrpcBackend.start({
    GetOrders: () => ({ orders: [] }),
    CreateOrder: (call) => ({
      order_id: `ord-${orderExecution.hits('CreateOrder')}`,
      client_order_id: call.request.client_order_id,
      state: 'NEW',
      timestamp: 1_700_000_000,
      error_message: '',
    }),
    CancelOrder: (call) => ({
      order_id: call.request.order_id,
      state: 'CANCELED',
      timestamp: 0,
      error_message: '',
    }),
  });
});
after(async () => {
  orderExecution?.close();
  await redis?.kill();
});

/** `name{labels} value` lines of /metrics for one metric. */
async function metricLines(running: RunningApp, name: string): Promise<string[]> {
  const response = await fetch(`${running.url}/metrics`);
  assert.equal(response.status, 200);
  return (await response.text())
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('the actions plugin, enabled', () => {
  let running: RunningApp;
  const logs = logCollector();

  before(async () => {
    running = await startApp(
      redis.url,
      {
        server: { log_level: 'info' },
        actions: { enabled: true, timeout: '2s' },
        backend_services: { order_execution: sourceConfig(orderExecution.address, { api_key: API_KEY }) },
      },
      { logStream: logs.stream },
    );
    await waitReady(running.app);
  });
  after(() => running?.close());

  test('an order reaches order-execution with the user, the api key and a client order id', async () => {
    const hits = orderExecution.hits('CreateOrder');
    const result = await running.app.actions.submit(TRADER, {
      kind: 'order.create',
      symbol: 'BTCUSDT',
      side: 'BUY',
      type: 'LIMIT',
      quantity: 0.5,
      price: 50_000,
    });
    assert.equal(result.outcome, 'accepted');
    assert.equal(orderExecution.hits('CreateOrder'), hits + 1);
    const call = orderExecution.calls.filter((c) => c.method === 'CreateOrder').at(-1)!;
    assert.equal(call.request.user_id, 'user-7');
    assert.equal(call.request.symbol, 'BTCUSDT');
    assert.equal(call.request.client_order_id, result.clientOrderId);
    assert.deepEqual(call.metadata.authorization, [`Bearer ${API_KEY}`]);
    assert.equal(result.orderId, `ord-${hits + 1}`);
  });

  test('position.close sizes the order from the position in the state', async () => {
    running.app.ingest.handleMessage(
      'positions:ETHUSDT',
      JSON.stringify({ symbol: 'ETHUSDT', side: 'SHORT', quantity: '1.25' }),
    );
    const result = await running.app.actions.submit(TRADER, { kind: 'position.close', symbol: 'ETHUSDT' });
    assert.equal(result.outcome, 'accepted');
    const call = orderExecution.calls.filter((c) => c.method === 'CreateOrder').at(-1)!;
    assert.equal(call.request.side, 'BUY');
    assert.equal(call.request.quantity, 1.25);
    assert.equal(call.request.reduce_only, true);
    const none = await running.app.actions.submit(TRADER, { kind: 'position.close', symbol: 'SOLUSDT' });
    assert.equal(none.reason, 'no open position for SOLUSDT');
  });

  test('the emergency stop in the state refuses orders; a cancel still goes', async () => {
    running.app.ingest.replaceSingle('risk', { emergency_stop: { is_stopped: true, stop_reason: 'drill' } });
    const hits = orderExecution.hits('CreateOrder');
    const refused = await running.app.actions.submit(TRADER, {
      kind: 'order.create',
      symbol: 'BTCUSDT',
      side: 'SELL',
      type: 'MARKET',
      quantity: 1,
    });
    assert.equal(refused.outcome, 'rejected');
    assert.match(refused.reason ?? '', /emergency stop/);
    assert.equal(orderExecution.hits('CreateOrder'), hits);
    const cancel = await running.app.actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-1' });
    assert.equal(cancel.outcome, 'accepted');
    assert.equal(cancel.state, 'CANCELED');
  });

  test('one audit line per action, without the api key', () => {
    const audit = logs.lines().filter((line) => line.audit === 'action');
    assert.equal(audit.length, 5);
    assert.deepEqual(
      audit.map((line) => [line.action, line.outcome, line.user, line.role]),
      [
        ['order.create', 'accepted', 'user-7', 'trader'],
        ['position.close', 'accepted', 'user-7', 'trader'],
        ['position.close', 'rejected', 'user-7', 'trader'],
        ['order.create', 'rejected', 'user-7', 'trader'],
        ['order.cancel', 'accepted', 'user-7', 'trader'],
      ],
    );
    assert.equal(audit[0].level, 30);
    assert.match(String(audit[0].client_order_id), /^dash-[0-9a-f]{16}$/);
    assert.ok(!logs.text().includes(API_KEY));
  });

  test('/metrics: dashboard_actions_total by action and outcome, and the breaker', async () => {
    const lines = await metricLines(running, 'dashboard_actions_total');
    assert.ok(
      lines.includes('dashboard_actions_total{action="order.create",outcome="accepted"} 1'),
      lines.join('\n'),
    );
    assert.ok(lines.includes('dashboard_actions_total{action="order.create",outcome="rejected"} 1'));
    assert.ok(lines.includes('dashboard_actions_total{action="position.close",outcome="accepted"} 1'));
    assert.ok(lines.includes('dashboard_actions_total{action="position.close",outcome="rejected"} 1'));
    assert.ok(lines.includes('dashboard_actions_total{action="order.cancel",outcome="accepted"} 1'));
    assert.ok(lines.includes('dashboard_actions_total{action="order.cancel",outcome="failed"} 0'));
    assert.deepEqual(await metricLines(running, 'dashboard_actions_breaker_state'), [
      'dashboard_actions_breaker_state 0',
    ]);
    assert.equal(running.app.actions.breaker, 'closed');
  });

  test('close resolves and closes the order-execution client: later actions fail without a call', async () => {
    const { app } = running;
    await running.close();
    const hits = orderExecution.hits();
    const result = await app.actions.submit(TRADER, { kind: 'order.cancel', orderId: 'ord-1' });
    assert.equal(result.outcome, 'failed');
    assert.match(result.reason ?? '', /^order-execution unavailable: /);
    assert.equal(orderExecution.hits(), hits);
  });
});

describe('the actions plugin, off (the default)', () => {
  test('every action is rejected, nothing is sent, and the metrics say so', async () => {
    // Polled, but not for actions: no client for them is made.
    const running = await startApp(redis.url, {
      backend_services: { order_execution: sourceConfig(orderExecution.address) },
    });
    try {
      const hits = orderExecution.hits('CreateOrder');
      const result = await running.app.actions.submit(TRADER, {
        kind: 'order.create',
        symbol: 'BTCUSDT',
        side: 'BUY',
        type: 'MARKET',
        quantity: 1,
      });
      assert.equal(result.outcome, 'rejected');
      assert.equal(result.reason, 'actions are disabled (actions.enabled)');
      assert.equal(orderExecution.hits('CreateOrder'), hits);
      assert.equal(running.app.actions.breaker, undefined);
      const lines = await metricLines(running, 'dashboard_actions_total');
      assert.ok(lines.includes('dashboard_actions_total{action="order.create",outcome="rejected"} 1'));
      assert.deepEqual(await metricLines(running, 'dashboard_actions_breaker_state'), []);
    } finally {
      await running.close();
    }
  });

  test('actions.enabled without backend_services.order_execution does not start', async () => {
    await assert.rejects(
      startApp(redis.url, { actions: { enabled: true } }),
      (error) => error instanceof ConfigError && /actions\.enabled/.test(error.message),
    );
  });
});
