import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { DashboardClient, DiffUpdate, JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import {
  emergencyStopResponse,
  GO_ZERO_TIME,
  GrpcBackend,
  grpcOrder,
  riskMetricsResponse,
} from '../helpers/backends-grpc.ts';
import { accountBody, HttpBackend, json, strategyRoutes } from '../helpers/backends-http.ts';
import { freshPoll, section, sourceConfig, stateStatus } from '../helpers/backends-poller.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * Each network source against a real stand-in backend: the poll's data lands in the state and reaches a client
 * subscribed beforehand as a diff, mapped the way src/backends.ts promises; api keys reach the backends.
 */

let redis: TestRedis;
let grpcBackend: GrpcBackend;
let account: HttpBackend;
let strategy: HttpBackend;
let running: RunningApp;
const clients: DashboardClient[] = [];

async function subscribed(topics: string[]): Promise<DashboardClient> {
  const client = await connectClient(running.url, { type: 'tui' });
  clients.push(client);
  await client.subscribe(topics);
  return client;
}

/** The next diff whose changes touch `topic`. */
function diffTouching(client: DashboardClient, topic: string): Promise<DiffUpdate> {
  return client.next('diff_update', (message) => message.changes[topic] !== undefined);
}

before(async () => {
  redis = await TestRedis.start();
  // Until a test fills them, the backends answer with nothing, so data reaches clients subscribed beforehand.
  grpcBackend = await GrpcBackend.start({
    GetOrders: () => ({ orders: [] }),
    GetRiskMetrics: () => riskMetricsResponse({}, 0),
    GetEmergencyStopStatus: () => emergencyStopResponse(),
  });
  account = await HttpBackend.start({
    '/api/account': json({ pnl: {}, balances: {}, positions: {} }),
  });
  strategy = await HttpBackend.start(strategyRoutes('simulation', {}));
  running = await startApp(redis.url, {
    backend_services: {
      order_execution: sourceConfig(grpcBackend.address, { api_key: 'order-secret', limit: 100 }),
      risk_manager: sourceConfig(grpcBackend.address, { api_key: 'risk-secret', account_id: 'acct-7' }),
      account_monitor: sourceConfig(account.url, { api_key: 'account-secret' }),
      strategy_engine: sourceConfig(strategy.url, { api_key: 'strategy-secret' }),
    },
  });
  await waitReady(running.app);
});

after(async () => {
  try {
    for (const client of clients) client.close();
    await running?.close();
    grpcBackend?.close();
    await account?.close();
    await strategy?.close();
  } finally {
    await redis?.kill();
  }
});

describe('happy path of each network source', () => {
  test('order_execution: orders with enum names and every field reach a subscriber as a diff', async () => {
    const client = await subscribed(['orders', 'system']);
    grpcBackend.handlers.GetOrders = () => ({
      orders: [
        grpcOrder({ order_id: 'o-1', state: 'PARTIALLY_FILLED', filled_quantity: 0.2, average_price: 49990 }),
        grpcOrder({
          order_id: 'o-2',
          symbol: 'ethusdt',
          side: 'SELL',
          type: 'STOP_LIMIT',
          time_in_force: 'IOC',
          stop_price: 2900,
          reduce_only: true,
        }),
      ],
    });
    const diff = diffTouching(client, 'orders');
    const call = grpcBackend.nextCall('GetOrders');
    await freshPoll(running.app, 'order_execution');

    const request = (await call).request;
    assert.equal(request.limit, 100, 'GetOrders asks for backend_services.order_execution.limit orders');
    assert.equal(request.state, 'STATE_UNSPECIFIED');

    const changes = (await diff).changes.orders as JsonObject;
    assert.ok(changes['o-1'] && changes['o-2'], `both orders arrive in a diff: ${JSON.stringify(changes)}`);
    const data = await viewWhere(client, (d) => section(d, 'orders')['o-2'] !== undefined);
    const orders = section(data, 'orders');
    assert.deepEqual(orders['o-1'], {
      ...grpcOrder({
        order_id: 'o-1',
        state: 'PARTIALLY_FILLED',
        filled_quantity: 0.2,
        average_price: 49990,
      }),
    });
    const second = orders['o-2'] as JsonObject;
    assert.equal(second.symbol, 'ETHUSDT', 'symbols are upper-cased like Redis orders');
    assert.equal(second.side, 'SELL');
    assert.equal(second.type, 'STOP_LIMIT');
    assert.equal(second.time_in_force, 'IOC');
    assert.equal(second.stop_price, 2900);
    assert.equal(second.reduce_only, true);
    assert.equal(second.created_at, 1_700_000_000, 'times stay Unix seconds, as the service sends them');

    assert.deepEqual(running.app.state.get('orders', 'o-1'), orders['o-1']);
    const status = stateStatus(running.app, 'order_execution')!;
    assert.equal(status.status, 'ok');
    assert.equal(status.breaker, 'closed');
    assert.equal(typeof status.last_success, 'string');
    assert.equal(status.stale_since, undefined);
  });

  test('order_execution: the api key is sent as gRPC metadata authorization: Bearer <key>', async () => {
    const call = grpcBackend.nextCall('GetOrders');
    await freshPoll(running.app, 'order_execution');
    assert.deepEqual((await call).metadata.authorization, ['Bearer order-secret']);
  });

  test('risk_manager: metrics and an emergency stop reach a `risk` subscriber; zero times are absent', async () => {
    const client = await subscribed(['risk']);
    grpcBackend.handlers.GetRiskMetrics = () =>
      riskMetricsResponse({ margin_ratio: 0.42, position_concentration: { BTCUSDT: 1 } }, 1_700_000_500);
    grpcBackend.handlers.GetEmergencyStopStatus = () =>
      emergencyStopResponse({
        is_stopped: true,
        stopped_at: 1_700_000_400,
        stop_reason: 'daily drawdown limit',
        triggered_by: 'risk-manager',
        orders_canceled: 4,
        positions_closed: 2,
        completed: false,
        completed_at: GO_ZERO_TIME,
      });
    const metricsCall = grpcBackend.nextCall('GetRiskMetrics');
    const stopCall = grpcBackend.nextCall('GetEmergencyStopStatus');
    const diff = diffTouching(client, 'risk');
    await freshPoll(running.app, 'risk_manager');

    assert.equal((await metricsCall).request.account_id, 'acct-7');
    assert.deepEqual((await metricsCall).metadata.authorization, ['Bearer risk-secret']);
    assert.deepEqual((await stopCall).metadata.authorization, ['Bearer risk-secret']);
    assert.ok((await diff).changes.risk, 'the risk record arrives as a diff');

    const data = await viewWhere(client, (d) => (d.risk as JsonObject | undefined)?.margin_ratio === 0.42);
    const risk = data.risk as JsonObject;
    assert.equal(risk.leverage, 3);
    assert.equal(risk.total_equity, 10000);
    assert.equal(risk.open_positions, 2);
    assert.deepEqual(risk.position_concentration, { BTCUSDT: 1 });
    assert.deepEqual(risk.limit_utilization, { leverage: 0.3 });
    assert.equal(risk.updated_at, 1_700_000_500);
    assert.deepEqual(risk.emergency_stop, {
      is_stopped: true,
      stopped_at: 1_700_000_400,
      stop_reason: 'daily drawdown limit',
      triggered_by: 'risk-manager',
      orders_canceled: 4,
      positions_closed: 2,
      completed: false,
    });
    assert.deepEqual(running.app.state.get('risk'), risk);
  });

  test('risk_manager: a stop that is not set has neither time', async () => {
    grpcBackend.handlers.GetRiskMetrics = () => riskMetricsResponse({}, 1_700_000_600);
    grpcBackend.handlers.GetEmergencyStopStatus = () => emergencyStopResponse({ completed_at: 0 });
    await freshPoll(running.app, 'risk_manager');
    const stop = (running.app.state.get('risk') as JsonObject).emergency_stop as JsonObject;
    assert.equal(stop.is_stopped, false);
    assert.equal('stopped_at' in stop, false, 'Go zero time is left out');
    assert.equal('completed_at' in stop, false, 'a zero time is left out');
  });

  test('account_monitor: decimals as strings become numbers; a negative quantity is a SHORT position', async () => {
    const client = await subscribed(['account', 'positions']);
    account.routes['/api/account'] = json(accountBody());
    const diff = diffTouching(client, 'positions');
    await freshPoll(running.app, 'account_monitor');
    assert.ok((await diff).changes.positions);

    const data = await viewWhere(
      client,
      (d) => d.account !== undefined && section(d, 'positions').ETHUSDT !== undefined,
    );
    const accountRecord = data.account as JsonObject;
    assert.equal(accountRecord.total_balance, 26000.5, 'the sum of usd_value when every balance has one');
    assert.deepEqual(accountRecord.balances, { USDT: 1000.5, BTC: 0.5 });
    assert.equal(accountRecord.unrealized_pnl, -3.25);
    assert.deepEqual(accountRecord.pnl, { realized_pnl: 12.5, unrealized_pnl: -3.25 });
    assert.deepEqual((accountRecord.balance_details as JsonObject).USDT, {
      free: 900.5,
      locked: 100,
      total: 1000.5,
      usd_value: 1000.5,
    });

    const positions = section(data, 'positions');
    assert.deepEqual(positions.BTCUSDT, {
      symbol: 'BTCUSDT',
      side: 'SHORT',
      quantity: 0.25,
      entry_price: 50000,
      mark_price: 49000,
      realized_pnl: 0,
      unrealized_pnl: 250,
      total_fees: 1.5,
      updated_at: '2024-01-01T00:00:00Z',
    });
    const eth = positions.ETHUSDT as JsonObject;
    assert.equal(eth.side, 'LONG');
    assert.equal(eth.quantity, 2);
    assert.equal(eth.mark_price, 3100, 'mark_price comes from current_price');
    assert.equal(positions.SOLUSDT, undefined, 'a zero quantity is no position');
    assert.deepEqual(Object.keys(positions).sort(), ['BTCUSDT', 'ETHUSDT']);
  });

  test('account_monitor: the api key is sent as X-API-Key (docs/configuration.md: every HTTP source)', async () => {
    const request = account.nextRequest('/api/account');
    await freshPoll(running.app, 'account_monitor');
    assert.equal((await request).headers['x-api-key'], 'account-secret');
  });

  test('account_monitor: total_balance is left out when a balance has no usd_value', async () => {
    account.routes['/api/account'] = json(
      accountBody({
        balances: { USDT: { total: '10', usd_value: '10' }, DOGE: { total: 5 } },
        timestamp: '2024-01-02T00:00:00Z',
      }),
    );
    await freshPoll(running.app, 'account_monitor');
    const record = running.app.state.get('account') as JsonObject;
    assert.deepEqual(record.balances, { USDT: 10, DOGE: 5 });
    assert.equal('total_balance' in record, false, 'not guessed from a partial sum');
  });

  test('strategy_engine: one record per strategy name with the engine mode; x-api-key sent', async () => {
    const client = await subscribed(['strategies']);
    strategy.routes = strategyRoutes('live');
    const status = strategy.nextRequest('/status');
    const info = strategy.nextRequest('/api/service-info');
    const diff = diffTouching(client, 'strategies');
    await freshPoll(running.app, 'strategy_engine');
    assert.equal((await status).headers['x-api-key'], 'strategy-secret');
    assert.equal((await info).headers['x-api-key'], 'strategy-secret');
    assert.ok((await diff).changes.strategies);

    const data = await viewWhere(client, (d) => Object.keys(section(d, 'strategies')).length === 2);
    const strategies = section(data, 'strategies');
    assert.deepEqual(strategies.momentum, {
      id: 'momentum',
      name: 'momentum',
      mode: 'live',
      status: 'running',
      pnl: 12.5,
      trades: 3,
      win_rate: 0.66,
    });
    assert.equal((strategies.mean_revert as JsonObject).mode, 'live');
    assert.equal((strategies.mean_revert as JsonObject).status, 'paused');
  });

  test('every source reports ok in system.sources after its polls', () => {
    for (const name of ['order_execution', 'risk_manager', 'account_monitor', 'strategy_engine'] as const) {
      const status = stateStatus(running.app, name);
      assert.equal(status?.status, 'ok', `${name}: ${JSON.stringify(status)}`);
      assert.equal(status?.breaker, 'closed');
    }
    assert.equal(
      running.app.poller.sources.has('market_data'),
      false,
      'an unconfigured source is not polled',
    );
  });
});
