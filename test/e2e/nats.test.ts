/**
 * NATS ingest end to end (plugins/nats-ingest.ts): a real nats-server on a free port, the hub subscribed to its
 * subjects, a real gRPC stand-in for order_execution and risk_manager, and WebSocket clients of the hub. What a
 * publisher sends on a subject is checked where a client reads it: a hub-protocol diff or view, a terminal UI frame.
 *
 * Synchronization: NATS delivers the messages of one publisher on one subject in order, and the hub handles them
 * one after the other; so "a bad or stale message has been handled" is awaited as "the valid message published
 * after it on the same subject has reached a client". Nothing here sleeps.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import WebSocket from 'ws';
import { NatsServer } from '../../scripts/lib/nats-server.ts';
import type { DashboardClient, DiffUpdate, JsonObject, ServerMessage } from '../../src/client.ts';
import { type Stack, startStack, stopStack } from '../helpers/app.ts';
import {
  type DashboardMessage,
  parseDashboardMessage,
  TUI_SUBSCRIBE,
  TuiModel,
} from '../helpers/b25-tui-model.ts';
import {
  emergencyStopResponse,
  GrpcBackend,
  grpcOrder,
  riskMetricsResponse,
} from '../helpers/backends-grpc.ts';
import { section, source, sourceConfig } from '../helpers/backends-poller.ts';
import { connectClient, openSocket, viewWhere, wsUrl } from '../helpers/client.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

// ---------------------------------------------------------------------------------------------------------
// Helpers

/** Publishes one message (JSON text of `payload`, or the string as given) and waits until the server has it. */
async function send(nc: NatsConnection, subject: string, payload: unknown): Promise<void> {
  nc.publish(subject, typeof payload === 'string' ? payload : JSON.stringify(payload));
  await nc.flush();
}

/** RFC 3339 text of a Unix time in seconds (`2023-11-14T22:13:20.000Z`). */
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

type Counts = Record<string, Record<string, number>>;
interface DebugBody {
  nats: {
    enabled: boolean;
    status: string;
    since: string;
    server?: string;
    reconnects: number;
    subjects: Record<string, string>;
  };
  ingest: { messages: Counts; invalid: Counts; stale: Counts };
}

async function debugOf(stack: Stack): Promise<DebugBody> {
  const response = await fetch(`${stack.running.url}/debug`);
  assert.equal(response.status, 200);
  return (await response.json()) as DebugBody;
}

async function metricsOf(stack: Stack): Promise<string> {
  const response = await fetch(`${stack.running.url}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

/** The value of one metric line (`name{labels} value`), or undefined when it is not exported. */
function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** The alert of a view (or of a diff's changes) whose message is `message`. */
function alertWith(data: JsonObject, message: string): JsonObject | undefined {
  return Object.values(section(data, 'alerts')).find(
    (alert): alert is JsonObject =>
      typeof alert === 'object' && alert !== null && (alert as JsonObject).message === message,
  );
}

/** A keyed section of the hub's state (`alerts`: `{ID: alert}`), read directly. */
function stateSection(stack: Stack, topic: 'alerts' | 'orders' | 'fills'): JsonObject {
  const { state } = stack.running.app;
  return Object.fromEntries([...state.keys(topic)].map((key) => [key, state.get(topic, key)!]));
}

const ordersOf = (data: JsonObject) => section(data, 'orders') as Record<string, JsonObject | undefined>;
const riskOf = (data: JsonObject) => (data.risk as JsonObject | undefined) ?? {};
const fillsOf = (data: JsonObject, symbol: string) =>
  (section(data, 'fills')[symbol] as JsonObject[] | undefined) ?? [];

/** A b25-tui socket: every text frame kept raw and fed to the terminal UI's model. */
class TuiSocket {
  readonly ws: WebSocket;
  readonly model = new TuiModel();
  readonly frames: string[] = [];
  private readonly waiters = new Set<() => void>();

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data: Buffer, binary: boolean) => {
      assert.equal(binary, false, 'the terminal UI reads text frames only');
      const text = data.toString();
      this.frames.push(text);
      this.model.receive(text);
      for (const wake of [...this.waiters]) wake();
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }

  /** The first frame at index `from` or later that satisfies `predicate`, within `timeoutMs`. */
  frame(predicate: (text: string) => boolean, from = 0, timeoutMs = 5000): Promise<string> {
    const found = () => this.frames.slice(from).find(predicate);
    const now = found();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`no expected frame within ${timeoutMs}ms; got ${JSON.stringify(this.frames)}`));
      }, timeoutMs);
      const wake = () => {
        const text = found();
        if (text === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve(text);
      };
      this.waiters.add(wake);
    });
  }

  close(): void {
    this.ws.close();
  }
}

/** A frame's parse by the terminal UI's parser, which must accept it. */
function parsedFrame(text: string): DashboardMessage {
  const result = parseDashboardMessage(text);
  assert.ok(result.ok, `the terminal UI rejects ${text}: ${result.ok ? '' : result.error}`);
  return result.message;
}

// ---------------------------------------------------------------------------------------------------------
// 1, 3, 4, 6: messages on every subject, order precedence against a poll, bad input, the terminal UI.

/** The polled orders' `updated_at` (Unix seconds, as order-execution's gRPC sends it). */
const T = 1_700_000_500;
/** The polled risk metrics' timestamp (Unix seconds). */
const RISK_POLLED_AT = 1_700_000_100;

describe('NATS subjects into the state and out to WebSocket clients', () => {
  let nats: NatsServer;
  let grpc: GrpcBackend;
  let stack: Stack;
  let publisher: NatsConnection;
  const clients: DashboardClient[] = [];
  const tuiSockets: TuiSocket[] = [];

  async function subscribed(topics: string[]): Promise<DashboardClient> {
    const client = await connectClient(stack.running.url, { type: 'tui' });
    clients.push(client);
    await client.subscribe(topics);
    return client;
  }

  before(async () => {
    nats = await NatsServer.start();
    grpc = await GrpcBackend.start({
      GetOrders: () => ({
        orders: [
          grpcOrder({
            order_id: 'ord-P',
            state: 'FILLED',
            filled_quantity: 0.5,
            average_price: 50000,
            updated_at: T,
          }),
          grpcOrder({ order_id: 'ord-L', state: 'PARTIALLY_FILLED', filled_quantity: 0.2, updated_at: T }),
        ],
      }),
      GetRiskMetrics: () => riskMetricsResponse({}, RISK_POLLED_AT),
      GetEmergencyStopStatus: () => emergencyStopResponse(),
    });
    stack = await startStack({
      nats: { url: nats.url },
      backend_services: {
        order_execution: sourceConfig(grpc.address),
        risk_manager: sourceConfig(grpc.address),
      },
      ingest: { max_message_size: '4KiB' },
      broadcast: { tui_interval: '20ms', web_interval: '50ms' },
    });
    // The first polls, done and recorded (a poll under way is joined; the jittered one it replaces is cancelled).
    await Promise.all([
      source(stack.running.app, 'order_execution').poll(),
      source(stack.running.app, 'risk_manager').poll(),
    ]);
    publisher = await nats.client();
  });

  after(async () => {
    try {
      for (const client of clients) client.close();
      for (const socket of tuiSockets) socket.close();
      await publisher?.close();
      if (stack) await stopStack(stack);
      grpc?.close();
    } finally {
      await nats?.kill();
    }
  });

  test('the hub reports the NATS side: up, the subjects and their topics', async () => {
    const { nats: info } = await debugOf(stack);
    assert.equal(info.enabled, true);
    assert.equal(info.status, 'up');
    assert.equal(info.reconnects, 0);
    assert.equal(info.server, `127.0.0.1:${nats.port}`);
    assert.deepEqual(info.subjects, {
      'orders.updates.*': 'orders',
      'trading.fills': 'fills',
      'trading.alerts': 'alerts',
      'risk.metrics': 'risk',
      'risk.alerts.*': 'alerts',
    });
    const metrics = await metricsOf(stack);
    assert.equal(metricValue(metrics, 'dashboard_nats_enabled'), 1);
    assert.equal(metricValue(metrics, 'dashboard_nats_connected'), 1);
    assert.equal(metricValue(metrics, 'dashboard_nats_reconnects_total'), 0);
    assert.equal((await fetch(`${stack.running.url}/ready`)).status, 200);
  });

  test('an order update on orders.updates.<SYMBOL> reaches an `orders` subscriber as a diff', async () => {
    const client = await subscribed(['orders']);
    const order = {
      order_id: 'ord-N1',
      client_order_id: 'cli-N1',
      symbol: 'btcusdt',
      side: 'BUY',
      type: 'LIMIT',
      state: 'PARTIALLY_FILLED',
      quantity: '1',
      price: '50000.5',
      filled_quantity: 0.25,
      updated_at: '2024-05-01T12:00:00.250Z',
    };
    const diff = client.next('diff_update', (m) => ordersOf(m.changes)['ord-N1'] !== undefined);
    // order-execution's envelope: {order, update_type, timestamp}.
    await send(publisher, 'orders.updates.BTCUSDT', {
      order,
      update_type: 'PARTIALLY_FILLED',
      timestamp: 1_714_564_800_250,
    });
    const stored = ordersOf((await diff).changes)['ord-N1'];
    assert.deepEqual(stored, {
      ...order,
      symbol: 'BTCUSDT',
      quantity: 1,
      price: 50000.5,
    });
    assert.deepEqual(stack.running.app.state.get('orders', 'ord-N1'), stored);

    // A bare order (no envelope) on another symbol's subject.
    await send(publisher, 'orders.updates.ETHUSDT', {
      order_id: 'ord-N2',
      symbol: 'ETHUSDT',
      side: 'SELL',
      type: 'MARKET',
      state: 'NEW',
      quantity: 2,
    });
    const data = await viewWhere(client, (d) => ordersOf(d)['ord-N2'] !== undefined);
    assert.equal(ordersOf(data)['ord-N2']?.state, 'NEW');
    assert.equal(ordersOf(data)['ord-N2']?.quantity, 2);
    assert.ok((stack.running.app.ingest.counters.messages.nats.orders ?? 0) >= 2);
  });

  test('fills on trading.fills reach a `fills:BTCUSDT` subscriber, newest first; other symbols do not', async () => {
    const client = await subscribed(['fills:BTCUSDT']);
    const diffs: DiffUpdate[] = [];
    client.on('diff_update', (m) => diffs.push(m as DiffUpdate));
    // Another symbol first: on the same subject, so handled before the BTCUSDT fill that is awaited.
    await send(publisher, 'trading.fills', {
      fill_id: 'f-eth-1',
      order_id: 'ord-N2',
      symbol: 'ETHUSDT',
      side: 'SELL',
      price: 3000,
      quantity: 2,
      timestamp: 1_714_564_800_000,
    });
    const first = client.next('diff_update', (m) => section(m.changes, 'fills').BTCUSDT !== undefined);
    await send(publisher, 'trading.fills', {
      fill_id: 'f-1',
      order_id: 'ord-N1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      price: '50000.5',
      quantity: '0.1',
      fee: '0.05',
      fee_asset: 'USDT',
      is_maker: false,
      timestamp: 1_714_564_801_000,
    });
    assert.deepEqual(section((await first).changes, 'fills').BTCUSDT, [
      {
        fill_id: 'f-1',
        order_id: 'ord-N1',
        symbol: 'BTCUSDT',
        side: 'BUY',
        price: 50000.5,
        quantity: 0.1,
        fee: 0.05,
        fee_asset: 'USDT',
        is_maker: false,
        timestamp: 1_714_564_801_000,
      },
    ]);
    // The account monitor's form (`id`, an RFC 3339 time), newer; then an older fill.
    await send(publisher, 'trading.fills', {
      id: 77,
      symbol: 'BTCUSDT',
      side: 'SELL',
      price: 50010,
      quantity: 0.1,
      timestamp: '2024-05-01T12:00:02Z',
    });
    await send(publisher, 'trading.fills', {
      fill_id: 'f-0',
      symbol: 'BTCUSDT',
      side: 'BUY',
      price: 49990,
      quantity: 0.3,
      timestamp: 1_714_564_799_000,
    });
    const data = await viewWhere(client, (d) => fillsOf(d, 'BTCUSDT').length === 3);
    const fills = fillsOf(data, 'BTCUSDT');
    assert.deepEqual(
      fills.map((f) => f.fill_id),
      ['77', 'f-1', 'f-0'],
    );
    assert.equal(fills[0].timestamp, Date.parse('2024-05-01T12:00:02Z'));
    assert.equal('id' in fills[0], false, '`id` is stored as fill_id');
    assert.deepEqual(Object.keys(section(data, 'fills')), ['BTCUSDT']);
    for (const diff of diffs) assert.deepEqual(Object.keys(section(diff.changes, 'fills')), ['BTCUSDT']);
    // The other symbol's fill is in the state: it was only not sent to this client.
    const eth = stack.running.app.state.get('fills', 'ETHUSDT') as JsonObject[];
    assert.equal(eth[0].fill_id, 'f-eth-1');
  });

  test('alerts from trading.alerts and risk.alerts.critical reach an `alerts` subscriber, one per payload', async () => {
    const client = await subscribed(['alerts']);
    const accountAlert = {
      type: 'low_balance',
      severity: 'WARNING',
      symbol: 'BTCUSDT',
      message: 'USDT balance 90.5 below 100',
      value: '90.5',
      threshold: 100,
      timestamp: '2024-05-01T12:00:00Z',
    };
    const diff = client.next('diff_update', (m) => alertWith(m.changes, accountAlert.message) !== undefined);
    await send(publisher, 'trading.alerts', accountAlert);
    const fromAccount = alertWith((await diff).changes, accountAlert.message)!;
    assert.match(String(fromAccount.id), /\S/);
    assert.deepEqual(fromAccount, {
      ...accountAlert,
      id: fromAccount.id,
      source: 'account_monitor',
      value: 90.5,
      timestamp: Date.parse('2024-05-01T12:00:00Z'),
    });
    assert.deepEqual(section(client.view.data, 'alerts')[String(fromAccount.id)], fromAccount, 'keyed by id');

    const riskAlert = {
      level: 'critical',
      policy_id: 'pol-7',
      policy_name: 'Max leverage',
      policy_type: 'limit',
      metric: 'leverage',
      metric_value: 12,
      threshold_value: 10,
      message: 'Leverage 12 exceeds limit 10',
      timestamp: 1_714_564_900,
    };
    await send(publisher, 'risk.alerts.critical', riskAlert);
    let data = await viewWhere(client, (d) => alertWith(d, riskAlert.message) !== undefined);
    const fromRisk = alertWith(data, riskAlert.message)!;
    assert.deepEqual(fromRisk, {
      id: fromRisk.id,
      source: 'risk_manager',
      type: 'leverage',
      severity: 'CRITICAL',
      level: 'critical',
      policy_id: 'pol-7',
      policy_name: 'Max leverage',
      policy_type: 'limit',
      metric: 'leverage',
      message: riskAlert.message,
      value: 12,
      threshold: 10,
      timestamp: 1_714_564_900_000,
    });
    assert.notEqual(fromRisk.id, fromAccount.id);

    // The same payload again is the same alert: stored once (a new one after it shows it was handled).
    const count = Object.keys(section(data, 'alerts')).length;
    await send(publisher, 'trading.alerts', accountAlert);
    const next = { ...accountAlert, message: 'USDT balance 80 below 100', value: 80 };
    await send(publisher, 'trading.alerts', next);
    data = await viewWhere(client, (d) => alertWith(d, next.message) !== undefined);
    assert.equal(Object.keys(section(data, 'alerts')).length, count + 1);
    assert.deepEqual(data.alerts, stateSection(stack, 'alerts'));
  });

  test('risk.metrics is merged into `risk` (polled fields kept); an older message changes nothing', async () => {
    const client = await subscribed(['risk']);
    const polled = riskOf(client.view.data);
    assert.equal(polled.updated_at, RISK_POLLED_AT, 'the poll filled `risk` first');
    assert.equal(polled.total_equity, 10000);
    const diffs: DiffUpdate[] = [];
    client.on('diff_update', (m) => diffs.push(m as DiffUpdate));
    await send(publisher, 'risk.metrics', {
      margin_ratio: 0.31,
      leverage: '4.5',
      daily_pnl: -20.5,
      position_concentration: { BTCUSDT: '0.7' },
      open_positions: 1,
      timestamp: RISK_POLLED_AT + 60,
    });
    let data = await viewWhere(client, (d) => riskOf(d).leverage === 4.5);
    let risk = riskOf(data);
    assert.equal(risk.margin_ratio, 0.31);
    assert.equal(risk.daily_pnl, -20.5);
    assert.equal(risk.open_positions, 1);
    assert.deepEqual(risk.position_concentration, { BTCUSDT: 0.7 });
    assert.equal(risk.updated_at, RISK_POLLED_AT + 60, '`timestamp` becomes updated_at');
    assert.equal('timestamp' in risk, false);
    assert.equal(risk.total_equity, 10000, 'a field the message lacks is kept from the poll');
    assert.deepEqual(risk.limit_utilization, polled.limit_utilization);
    assert.deepEqual(risk.emergency_stop, polled.emergency_stop);
    assert.deepEqual(risk, stack.running.app.state.get('risk'));

    // An older message, then a newer one without its margin_ratio: had the older been merged, its margin_ratio
    // would remain (the two may fall in one tick, so the diffs alone cannot tell).
    await send(publisher, 'risk.metrics', {
      leverage: 99,
      margin_ratio: 0.99,
      timestamp: RISK_POLLED_AT + 30,
    });
    await send(publisher, 'risk.metrics', { leverage: 5, timestamp: RISK_POLLED_AT + 90 });
    data = await viewWhere(client, (d) => riskOf(d).leverage === 5);
    risk = riskOf(data);
    assert.equal(risk.updated_at, RISK_POLLED_AT + 90);
    assert.equal(risk.margin_ratio, 0.31, 'the older message was not merged');
    assert.ok(
      diffs.every((d) => riskOf(d.changes).leverage !== 99),
      'the older metrics never reached the client',
    );
    assert.equal(stack.running.app.ingest.counters.stale.nats.risk, 1);
  });

  test('risk.alerts.emergency sets risk.emergency_stop and adds an alert', async () => {
    const client = await subscribed(['risk', 'alerts']);
    assert.equal((riskOf(client.view.data).emergency_stop as JsonObject).is_stopped, false);
    const stop = {
      level: 'emergency',
      type: 'emergency_stop',
      reason: 'Daily drawdown 12% over the 10% limit',
      triggered_by: 'risk-manager',
      timestamp: 1_714_565_000,
    };
    const diff = client.next(
      'diff_update',
      (m) => (riskOf(m.changes).emergency_stop as JsonObject | undefined)?.is_stopped === true,
    );
    await send(publisher, 'risk.alerts.emergency', stop);
    const changes = (await diff).changes;
    const emergency = riskOf(changes).emergency_stop as JsonObject;
    assert.equal(emergency.is_stopped, true);
    assert.equal(emergency.stopped_at, 1_714_565_000);
    assert.equal(emergency.stop_reason, stop.reason);
    assert.equal(emergency.triggered_by, 'risk-manager');
    // The stop and its alert are written together, so they reach the client together.
    const alert = alertWith(changes, stop.reason);
    assert.ok(alert, `the emergency alert comes with the stop: ${JSON.stringify(changes)}`);
    assert.equal(alert.source, 'risk_manager');
    assert.equal(alert.type, 'emergency_stop');
    assert.equal(alert.severity, 'CRITICAL');
    assert.equal(alert.timestamp, 1_714_565_000_000);
    const risk = riskOf(await viewWhere(client, (d) => alertWith(d, stop.reason) !== undefined));
    assert.equal(risk.leverage, 5, 'the metrics are kept');
    assert.deepEqual(risk, stack.running.app.state.get('risk'));
  });

  test('order precedence: an update older than the polled order is not written and is counted stale; a later one is', async () => {
    const client = await subscribed(['orders']);
    // From the poll (Unix seconds): ord-P FILLED at T, ord-L PARTIALLY_FILLED at T.
    assert.equal(ordersOf(client.view.data)['ord-P']?.state, 'FILLED');
    assert.equal(ordersOf(client.view.data)['ord-P']?.updated_at, T);
    const staleBefore = (await debugOf(stack)).ingest.stale.nats.orders ?? 0;
    assert.equal(staleBefore, 0);
    const diffs: DiffUpdate[] = [];
    client.on('diff_update', (m) => diffs.push(m as DiffUpdate));
    const marker = async (id: string) => {
      await send(publisher, 'orders.updates.BTCUSDT', {
        order: { order_id: id, symbol: 'BTCUSDT', side: 'BUY', state: 'NEW', quantity: 1 },
        update_type: 'NEW',
        timestamp: Date.now(),
      });
      return viewWhere(client, (d) => ordersOf(d)[id] !== undefined);
    };

    // 10 s before the polled FILLED: a late NATS message.
    await send(publisher, 'orders.updates.BTCUSDT', {
      order: grpcOrder({
        order_id: 'ord-P',
        state: 'PARTIALLY_FILLED',
        filled_quantity: 0.3,
        updated_at: iso(T - 10),
      }),
      update_type: 'PARTIALLY_FILLED',
      timestamp: (T - 10) * 1000,
    });
    let data = await marker('ord-mark-1');
    assert.equal(ordersOf(data)['ord-P']?.state, 'FILLED');
    assert.equal(ordersOf(data)['ord-P']?.filled_quantity, 0.5);
    assert.equal((await debugOf(stack)).ingest.stale.nats.orders, 1);

    // Within the polled whole second: the same instant, so the lifecycle decides (PARTIALLY_FILLED < FILLED).
    await send(publisher, 'orders.updates.BTCUSDT', {
      order: grpcOrder({
        order_id: 'ord-P',
        state: 'PARTIALLY_FILLED',
        filled_quantity: 0.4,
        updated_at: new Date(T * 1000 + 500).toISOString(),
      }),
      update_type: 'PARTIALLY_FILLED',
      timestamp: T * 1000 + 500,
    });
    data = await marker('ord-mark-2');
    assert.equal(ordersOf(data)['ord-P']?.state, 'FILLED');
    assert.equal((await debugOf(stack)).ingest.stale.nats.orders, 2);
    assert.equal(
      metricValue(await metricsOf(stack), 'dashboard_ingest_stale_total{source="nats",topic="orders"}'),
      2,
    );
    assert.ok(
      diffs.every((d) => ordersOf(d.changes)['ord-P'] === undefined),
      'no stale version of ord-P reached the client',
    );
    assert.equal((stack.running.app.state.get('orders', 'ord-P') as JsonObject).state, 'FILLED');

    // 5 s after the polled PARTIALLY_FILLED: written.
    const later = grpcOrder({
      order_id: 'ord-L',
      state: 'FILLED',
      filled_quantity: 0.5,
      average_price: 50001,
      updated_at: iso(T + 5),
    });
    const diff = client.next('diff_update', (m) => ordersOf(m.changes)['ord-L'] !== undefined);
    await send(publisher, 'orders.updates.BTCUSDT', {
      order: later,
      update_type: 'FILLED',
      timestamp: (T + 5) * 1000,
    });
    assert.deepEqual(ordersOf((await diff).changes)['ord-L'], {
      state: 'FILLED',
      filled_quantity: 0.5,
      average_price: 50001,
      updated_at: iso(T + 5),
    });
    assert.deepEqual(ordersOf(client.view.data)['ord-L'], later);
    assert.equal((await debugOf(stack)).ingest.stale.nats.orders, 2);
  });

  test('bad input on every subject is counted and dropped; another client gets only the valid messages after it', async () => {
    const watcher = await subscribed(['orders', 'fills', 'alerts', 'risk']);
    const received: ServerMessage[] = [];
    watcher.on('message', (m) => received.push(m));
    const invalidBefore = (await debugOf(stack)).ingest.invalid.nats;
    const big = 'x'.repeat(5000); // over ingest.max_message_size (4KiB)
    const bad: Record<string, [string, string[]]> = {
      orders: [
        'orders.updates.BTCUSDT',
        [
          '{"order": {"order_id": "bad-o1", "symbol": "BTCUSDT"',
          JSON.stringify({
            order: { order_id: 'bad-o2', symbol: 'BTCUSDT', state: 'NEW', price: 'not-a-number' },
          }),
          JSON.stringify({ order_id: 'bad-o3', symbol: 'BTCUSDT', state: 'NEW', client_order_id: big }),
          '{"order":{"order_id":"bad-o4","symbol":"BTCUSDT","state":"NEW","__proto__":{"polluted":"bad-o4"}}}',
          '{"order_id":"bad-o5","symbol":"BTCUSDT","state":"NEW","price":1e400}',
          'null',
        ],
      ],
      fills: [
        'trading.fills',
        [
          'bad-f1 is not JSON',
          JSON.stringify({
            fill_id: 'bad-f2',
            symbol: 'BTCUSDT',
            side: 'BUY',
            price: 'not-a-number',
            quantity: 1,
            timestamp: 1,
          }),
          JSON.stringify({
            fill_id: 'bad-f3',
            symbol: 'BTCUSDT',
            side: 'BUY',
            price: 1,
            quantity: 1,
            fee_asset: big,
            timestamp: 1_714_564_800_000,
          }),
          '{"fill_id":"bad-f4","symbol":"BTCUSDT","side":"BUY","price":1,"quantity":1,"timestamp":1714564800000,"__proto__":{"polluted":"bad-f4"}}',
          '{"fill_id":"bad-f5","symbol":"BTCUSDT","side":"BUY","price":1,"quantity":1e400,"timestamp":1714564800000}',
        ],
      ],
      alerts: [
        'trading.alerts',
        [
          '{"type":"bad-a1",',
          JSON.stringify({
            type: 'bad-a2',
            severity: 'LOUD',
            message: 'bad-a2',
            value: 1,
            timestamp: '2024-05-01T12:00:00Z',
          }),
          JSON.stringify({
            type: 'bad-a3',
            severity: 'INFO',
            message: 'bad-a3',
            note: big,
            timestamp: '2024-05-01T12:00:00Z',
          }),
          '{"type":"bad-a4","severity":"INFO","message":"bad-a4","timestamp":"2024-05-01T12:00:00Z","__proto__":{"polluted":"bad-a4"}}',
          '{"type":"bad-a5","severity":"INFO","message":"bad-a5","value":1e400,"timestamp":"2024-05-01T12:00:00Z"}',
        ],
      ],
      risk: [
        'risk.metrics',
        [
          '{"leverage": "bad-r1"',
          JSON.stringify({ leverage: 'not-a-number', note: 'bad-r2', timestamp: 1_800_000_000 }),
          JSON.stringify({ leverage: 7, note: `bad-r3${big}`, timestamp: 1_800_000_000 }),
          '{"leverage":7,"note":"bad-r4","timestamp":1800000000,"__proto__":{"polluted":"bad-r4"}}',
          '{"margin_ratio":1e400,"note":"bad-r5","timestamp":1800000000}',
        ],
      ],
      risk_alerts: [
        'risk.alerts.critical',
        [
          'bad-ra1',
          JSON.stringify({ level: 'LOUD', metric: 'bad-ra2', message: 'bad-ra2', timestamp: 1_714_564_900 }),
          JSON.stringify({
            level: 'critical',
            message: 'bad-ra3',
            policy_name: big.slice(0, 250),
            reason: big,
            timestamp: 1_714_564_900,
          }),
          '{"level":"critical","message":"bad-ra4","timestamp":1714564900,"__proto__":{"polluted":"bad-ra4"}}',
          '{"level":"critical","message":"bad-ra5","metric_value":1e400,"timestamp":1714564900}',
        ],
      ],
    };
    for (const [subject, payloads] of Object.values(bad))
      for (const payload of payloads) await send(publisher, subject, payload);

    // A valid message on every subject after the bad ones.
    const now = Date.now();
    await send(publisher, 'orders.updates.BTCUSDT', {
      order_id: 'good-o1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      type: 'LIMIT',
      state: 'NEW',
      quantity: 1,
      price: 49000,
    });
    await send(publisher, 'trading.fills', {
      fill_id: 'good-f1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      price: 49000,
      quantity: 1,
      timestamp: now,
    });
    await send(publisher, 'trading.alerts', {
      type: 'high_leverage',
      severity: 'INFO',
      message: 'good alert after the bad ones',
      value: 1,
      timestamp: new Date(now).toISOString(),
    });
    await send(publisher, 'risk.alerts.warning', {
      level: 'warning',
      metric: 'drawdown_daily',
      metric_value: 0.04,
      threshold_value: 0.05,
      message: 'good risk alert after the bad ones',
      timestamp: Math.floor(now / 1000),
    });
    await send(publisher, 'risk.metrics', { leverage: 6.5, timestamp: RISK_POLLED_AT + 200 });
    const data = await viewWhere(
      watcher,
      (d) =>
        ordersOf(d)['good-o1'] !== undefined &&
        fillsOf(d, 'BTCUSDT').some((f) => f.fill_id === 'good-f1') &&
        alertWith(d, 'good alert after the bad ones') !== undefined &&
        alertWith(d, 'good risk alert after the bad ones') !== undefined &&
        riskOf(d).leverage === 6.5,
    );

    const invalidAfter = (await debugOf(stack)).ingest.invalid.nats;
    const delta = (topic: string) => (invalidAfter[topic] ?? 0) - (invalidBefore[topic] ?? 0);
    assert.equal(delta('orders'), bad.orders[1].length);
    assert.equal(delta('fills'), bad.fills[1].length);
    assert.equal(delta('alerts'), bad.alerts[1].length + bad.risk_alerts[1].length);
    assert.equal(delta('risk'), bad.risk[1].length);
    const metrics = await metricsOf(stack);
    for (const topic of ['orders', 'fills', 'alerts', 'risk'])
      assert.equal(
        metricValue(metrics, `dashboard_ingest_invalid_total{source="nats",topic="${topic}"}`),
        invalidAfter[topic],
        topic,
      );

    // Nothing of them reached the client or the state; no prototype was touched; the connection is still up.
    const seen = JSON.stringify(received);
    for (const trace of ['bad-', 'LOUD', 'not-a-number', 'polluted', 'xxxxxxxxxx'])
      assert.ok(!seen.includes(trace), `the client received ${trace}`);
    const state = await (
      await fetch(`${stack.running.url}/api/v1/state?topics=orders,fills,alerts,risk`)
    ).json();
    assert.ok(!JSON.stringify(state).includes('bad-'));
    assert.deepEqual(data, (state as { data: JsonObject }).data);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(riskOf(data).updated_at, RISK_POLLED_AT + 200, 'no bad metrics (timestamp 1.8e9) landed');
    assert.equal(stack.running.app.natsIngest.info.status, 'up');
    assert.equal(stack.running.app.natsIngest.info.reconnects, 0);
    assert.equal((await fetch(`${stack.running.url}/health`)).status, 200);
  });

  test('the terminal UI (b25-tui) gets new fills and alerts as frames its parser accepts, each once', async () => {
    const tui = new TuiSocket(wsUrl(stack.running.url, 'protocol=b25-tui'));
    tuiSockets.push(tui);
    await tui.opened();
    tui.ws.send(TUI_SUBSCRIBE);
    // The snapshot is built when the subscribe is handled: its orders frame says it has been.
    await tui.frame((text) => text.startsWith('{"type":"orders"'));
    const hasFill = (id: string) => (text: string) =>
      text.startsWith('{"type":"fills"') && text.includes(`"id":"${id}"`);

    const firstAt = 1_714_570_000_000;
    await send(publisher, 'trading.fills', {
      fill_id: 'tui-f1',
      order_id: 'ord-T',
      symbol: 'TUIUSDT',
      side: 'BUY',
      price: '101.5',
      quantity: 2,
      fee: 0.1,
      timestamp: firstAt,
    });
    const first = parsedFrame(await tui.frame(hasFill('tui-f1')));
    assert.equal(first.type, 'fills');
    assert.equal(first.data.length, 1, 'only the new fill');
    const [fill] = first.data;
    assert.deepEqual(
      { ...fill, timestamp: fill.timestamp.epochMillis },
      {
        id: 'tui-f1',
        order_id: 'ord-T',
        symbol: 'TUIUSDT',
        side: 'Buy',
        price: 101.5,
        size: 2,
        fee: 0.1,
        pnl: 0,
        timestamp: firstAt,
      },
    );

    await send(publisher, 'trading.fills', {
      fill_id: 'tui-f2',
      symbol: 'TUIUSDT',
      side: 'SELL',
      price: 102,
      quantity: 1,
      timestamp: firstAt + 1000,
    });
    const second = parsedFrame(await tui.frame(hasFill('tui-f2')));
    assert.equal(second.type, 'fills');
    assert.deepEqual(
      second.data.map((f) => [f.id, f.side]),
      [['tui-f2', 'Sell']],
      'a later frame carries only the fill not sent before',
    );
    assert.equal(tui.frames.filter(hasFill('tui-f1')).length, 1, 'tui-f1 was sent once');
    assert.deepEqual(
      tui.model.fills.slice(0, 2).map((f) => f.id),
      ['tui-f2', 'tui-f1'],
      'the newest on top of its panel',
    );

    const isAlert = (message: string) => (text: string) =>
      text.startsWith('{"type":"alerts"') && text.includes(message);
    const alertAt = '2024-05-01T13:00:00Z';
    await send(publisher, 'trading.alerts', {
      type: 'margin_call',
      severity: 'CRITICAL',
      message: 'tui: margin ratio 0.92 over 0.9',
      value: 0.92,
      threshold: 0.9,
      timestamp: alertAt,
    });
    const alerts = parsedFrame(await tui.frame(isAlert('tui: margin ratio')));
    assert.equal(alerts.type, 'alerts');
    assert.equal(alerts.data.length, 1, 'only the new alert');
    assert.equal(alerts.data[0].level, 'Error', 'CRITICAL is its Error level');
    assert.equal(alerts.data[0].message, 'tui: margin ratio 0.92 over 0.9');
    assert.equal(alerts.data[0].timestamp.epochMillis, Date.parse(alertAt));
    const stored = alertWith({ alerts: stateSection(stack, 'alerts') }, 'tui: margin ratio 0.92 over 0.9');
    assert.equal(alerts.data[0].id, stored?.id);

    await send(publisher, 'risk.alerts.warning', {
      level: 'warning',
      metric: 'leverage',
      metric_value: 8,
      threshold_value: 10,
      message: 'tui: leverage 8 near limit 10',
      timestamp: 1_714_570_100,
    });
    const riskAlerts = parsedFrame(await tui.frame(isAlert('tui: leverage 8')));
    assert.equal(riskAlerts.type, 'alerts');
    assert.deepEqual(
      riskAlerts.data.map((a) => [a.level, a.message]),
      [['Warning', 'tui: leverage 8 near limit 10']],
    );
    assert.deepEqual(tui.model.errors, [], 'every frame parsed');
    assert.ok(tui.model.accepted.fills >= 2 && tui.model.accepted.alerts >= 2);
  });
});

// ---------------------------------------------------------------------------------------------------------
// 2: the NATS server dies and comes back.

describe('NATS outage: served from the last state, reconnected, refreshed from the backends', () => {
  let nats: NatsServer;
  let grpc: GrpcBackend;
  let stack: Stack;
  let client: DashboardClient;
  const publishers: NatsConnection[] = [];

  const natsStatus = (d: JsonObject) => ((d.system as JsonObject | undefined)?.nats as JsonObject)?.status;

  before(async () => {
    nats = await NatsServer.start();
    grpc = await GrpcBackend.start({
      GetOrders: () => ({ orders: [] }),
      GetRiskMetrics: () => riskMetricsResponse({}, RISK_POLLED_AT),
      GetEmergencyStopStatus: () => emergencyStopResponse(),
    });
    stack = await startStack({
      nats: { url: nats.url },
      // A poll an hour (timeout 1 s): after the first, the only poll is the refresh that follows a reconnection.
      backend_services: {
        order_execution: sourceConfig(grpc.address, { interval: '1h', timeout: '1s' }),
        risk_manager: sourceConfig(grpc.address, { interval: '1h', timeout: '1s' }),
      },
      broadcast: { tui_interval: '20ms', web_interval: '50ms' },
    });
    await Promise.all([
      source(stack.running.app, 'order_execution').poll(),
      source(stack.running.app, 'risk_manager').poll(),
    ]);
    client = await connectClient(stack.running.url, { type: 'tui' });
    await client.subscribe(['system', 'orders']);
  });

  after(async () => {
    try {
      client?.close();
      for (const nc of publishers) await nc.close().catch(() => {});
      if (stack) await stopStack(stack);
      grpc?.close();
    } finally {
      await nats?.kill();
    }
  });

  test('killed: /ready 503 naming nats, system.nats down; restarted: reconnected, refreshed, updates flow', async () => {
    const { app, url } = stack.running;
    const early = await openPublisher();
    await send(early, 'orders.updates.BTCUSDT', {
      order_id: 'ord-before',
      symbol: 'BTCUSDT',
      side: 'BUY',
      state: 'NEW',
      quantity: 1,
    });
    await viewWhere(client, (d) => ordersOf(d)['ord-before'] !== undefined);
    assert.equal(natsStatus(client.view.data), 'up');
    const ordersPolled = grpc.hits('GetOrders');
    const riskPolled = grpc.hits('GetRiskMetrics');
    assert.ok(ordersPolled >= 1, 'the first poll');

    const down = viewWhere(client, (d) => natsStatus(d) === 'down');
    const killedAt = Date.now();
    await nats.kill();
    await down;
    const ready = await fetch(`${url}/ready`);
    assert.equal(ready.status, 503);
    const body = (await ready.json()) as { status: string; reason: string };
    assert.equal(body.status, 'not_ready');
    assert.match(body.reason, /^nats is down/);
    assert.equal(metricValue(await metricsOf(stack), 'dashboard_nats_connected'), 0);
    assert.equal((await debugOf(stack)).nats.status, 'down');
    // The last known state is still served.
    assert.ok(ordersOf(client.view.data)['ord-before']);
    assert.equal(grpc.hits('GetOrders'), ordersPolled, 'no poll while NATS is down');

    // What the hub missed: order-execution now knows of an order whose NATS update was lost in the outage.
    grpc.handlers.GetOrders = () => ({
      orders: [
        grpcOrder({ order_id: 'ord-before', state: 'NEW' }),
        grpcOrder({ order_id: 'ord-missed', state: 'FILLED', filled_quantity: 0.5, updated_at: T }),
      ],
    });
    const refreshOrders = grpc.nextCall('GetOrders', 15_000);
    const refreshRisk = grpc.nextCall('GetRiskMetrics', 15_000);
    const up = viewWhere(client, (d) => natsStatus(d) === 'up', 15_000);
    await nats.restart();
    const restartedAt = Date.now();
    await up;
    // The backoff rule, not a speed: the next attempt comes by the time the outage has doubled (at least 250 ms,
    // at most 5 s), so the hub finds the server within as long as it was away, plus a second for a loaded machine.
    // nats.js's delay handler is asked on every pass of its dial loop: one that doubled per call waited 5 s at once.
    const outage = restartedAt - killedAt;
    const backAfter = Date.now() - restartedAt;
    const bound = Math.min(5000, Math.max(250, outage)) + 1000;
    assert.ok(
      backAfter <= bound,
      `reconnected ${backAfter} ms after the server was back (outage ${outage} ms)`,
    );
    assert.equal(app.natsIngest.info.status, 'up');
    assert.equal(app.natsIngest.info.reconnects, 1);
    await Promise.all([refreshOrders, refreshRisk]);
    assert.equal(grpc.hits('GetOrders'), ordersPolled + 1, 'one refresh of orders');
    assert.equal(grpc.hits('GetRiskMetrics'), riskPolled + 1, 'one refresh of risk');
    await viewWhere(client, (d) => ordersOf(d)['ord-missed']?.state === 'FILLED');

    assert.equal((await fetch(`${url}/ready`)).status, 200);
    const metrics = await metricsOf(stack);
    assert.equal(metricValue(metrics, 'dashboard_nats_connected'), 1);
    assert.equal(metricValue(metrics, 'dashboard_nats_reconnects_total'), 1);
    const debug = await debugOf(stack);
    assert.equal(debug.nats.status, 'up');
    assert.equal(debug.nats.reconnects, 1);

    // Subscribed again on the restarted server: an update published now arrives.
    const afterRestart = await openPublisher();
    const diff = client.next('diff_update', (m) => ordersOf(m.changes)['ord-after'] !== undefined);
    await send(afterRestart, 'orders.updates.ETHUSDT', {
      order_id: 'ord-after',
      symbol: 'ETHUSDT',
      side: 'SELL',
      state: 'NEW',
      quantity: 3,
    });
    assert.equal(ordersOf((await diff).changes)['ord-after']?.quantity, 3);
  });

  async function openPublisher(): Promise<NatsConnection> {
    const nc = await nats.client();
    publishers.push(nc);
    return nc;
  }
});

// ---------------------------------------------------------------------------------------------------------
// 5: fills and alerts are private topics.

describe('permissions on the NATS topics', () => {
  let nats: NatsServer;
  let stack: Stack;
  let publisher: NatsConnection;
  let trader: DashboardClient | undefined;

  before(async () => {
    nats = await NatsServer.start();
    stack = await startStack({
      nats: { url: nats.url },
      auth: authOn(),
      broadcast: { tui_interval: '20ms', web_interval: '50ms' },
    });
    publisher = await nats.client();
  });

  after(async () => {
    try {
      trader?.close();
      await publisher?.close();
      if (stack) await stopStack(stack);
    } finally {
      await nats?.kill();
    }
  });

  test('a viewer is refused fills and alerts; a trader subscribes and receives them', async () => {
    const viewer = await openSocket(stack.running.url, {
      token: signToken({ userId: 'vera', role: 'viewer' }),
      query: 'type=tui',
    });
    try {
      for (const subscriptions of [['fills'], ['fills:BTCUSDT'], ['alerts'], ['market_data', 'alerts']]) {
        const reply = await viewer.request({ action: 'subscribe', subscriptions }, 'subscribed', 'error');
        assert.equal(reply.type, 'error', JSON.stringify(subscriptions));
        assert.equal(reply.code, 'forbidden_topic', JSON.stringify(subscriptions));
      }
      assert.deepEqual(await viewer.subscriptions(), [], 'nothing was subscribed');
    } finally {
      await viewer.close();
    }

    trader = await connectClient(stack.running.url, {
      type: 'tui',
      token: signToken({ userId: 'tina', role: 'trader' }),
    });
    // (`next` types a `subscribed` reply as never: ServerMessage joins it with `unsubscribed`.)
    const reply = trader.next('subscribed') as Promise<unknown> as Promise<{ subscriptions: string[] }>;
    await trader.subscribe(['fills:BTCUSDT', 'alerts']);
    assert.deepEqual([...(await reply).subscriptions].sort(), ['alerts', 'fills:BTCUSDT']);
    await send(publisher, 'trading.fills', {
      fill_id: 'perm-f1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      price: 50000,
      quantity: 0.01,
      timestamp: 1_714_564_800_000,
    });
    await send(publisher, 'trading.alerts', {
      type: 'low_balance',
      severity: 'INFO',
      message: 'perm: for traders',
      timestamp: '2024-05-01T12:00:00Z',
    });
    await viewWhere(
      trader,
      (d) =>
        fillsOf(d, 'BTCUSDT')[0]?.fill_id === 'perm-f1' && alertWith(d, 'perm: for traders') !== undefined,
    );
  });
});
