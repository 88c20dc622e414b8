/**
 * The topics the NATS side brings (fills, alerts, risk) and the order precedence every source shares, on a real
 * StateStore and Ingest: what is stored, what is refused (and counted), what is kept as the newest, and what a
 * stale message or poll may not overwrite.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MessageSource } from '../../src/ingest/counters.ts';
import { Ingest, type IngestOptions } from '../../src/ingest/ingest.ts';
import { RecordSize, withoutNulls } from '../../src/ingest/normalize.ts';
import { isStaleOrder } from '../../src/ingest/orders.ts';
import { PayloadError } from '../../src/ingest/schemas.ts';
import type { Json, JsonObject } from '../../src/merge-patch.ts';
import { SINGLE, StateStore } from '../../src/state.ts';
import {
  buildFilter,
  INGEST_TOPICS,
  KEYED_TOPICS,
  SYMBOL_SCOPED_TOPICS,
  TopicError,
  validateSubscription,
} from '../../src/topics.ts';

/** 2026-03-01T12:00:00Z, in ms and in seconds. */
const T = Date.parse('2026-03-01T12:00:00Z');
const S = T / 1000;

function setup(options: Partial<IngestOptions> = {}) {
  const clock = { now: T };
  const state = new StateStore({ now: () => clock.now });
  const ingest = new Ingest(state, {
    orderbookDepth: 20,
    tradesKept: 5,
    fillsKept: 3,
    alertsKept: 3,
    terminalOrderRetention: 60_000,
    maxMessageSize: 1 << 20,
    now: () => clock.now,
    ...options,
  });
  /** One message as the NATS side hands it over: the topic as the channel, the symbol in the payload. */
  const send = (channel: string, payload: unknown, source: MessageSource = 'nats') =>
    ingest.handleMessage(channel, typeof payload === 'string' ? payload : JSON.stringify(payload), source);
  return { state, ingest, clock, send };
}
type Context = ReturnType<typeof setup>;

/**
 * Expects the message to be refused with a PayloadError matching `pattern` (of `errorTopic`, the channel's topic
 * unless given), nothing written, and the message counted invalid under the channel's topic.
 */
function refused(
  context: Context,
  channel: string,
  payload: unknown,
  pattern: RegExp,
  errorTopic?: string,
): PayloadError {
  const { state, ingest } = context;
  const label = channel.split(':')[0];
  const sequence = state.sequence;
  const bytes = state.bytes;
  const invalid = ingest.counters.invalid.nats[label] ?? 0;
  const messages = ingest.counters.messages.nats[label] ?? 0;
  let caught: unknown;
  try {
    context.send(channel, payload);
  } catch (error) {
    caught = error;
  }
  assert.ok(
    caught instanceof PayloadError,
    `expected a PayloadError for ${String(payload)}, got ${String(caught)}`,
  );
  assert.equal(caught.topic, errorTopic ?? label);
  assert.match(caught.message, pattern);
  assert.equal(state.sequence, sequence, 'a refused message changed the state');
  assert.equal(state.bytes, bytes);
  assert.equal(ingest.counters.invalid.nats[label], invalid + 1);
  assert.equal(
    ingest.counters.messages.nats[label] ?? 0,
    messages,
    'a refused message was counted as accepted',
  );
  return caught;
}

/** The estimated size of a stored value, by the rule the state's budget adds up (normalize.ts RecordSize). */
function estimate(value: Json): number {
  const size = new RecordSize('estimate', Number.POSITIVE_INFINITY);
  withoutNulls({ v: value }, size);
  // `{"v":…}` around it: the braces, and the key with its quotes, colon and separator.
  return size.bytes - 2 - ('v'.length + 4);
}

const alertsOf = (state: StateStore) =>
  [...state.keys('alerts')].map((id) => state.get('alerts', id) as JsonObject);

describe('topics: fills, alerts, risk', () => {
  test('are ingest topics; fills is symbol-scoped, alerts keyed, risk a single object', () => {
    for (const topic of ['fills', 'alerts', 'risk'] as const) assert.ok(INGEST_TOPICS.includes(topic), topic);
    assert.ok(SYMBOL_SCOPED_TOPICS.has('fills'));
    assert.ok(KEYED_TOPICS.has('fills') && KEYED_TOPICS.has('alerts'));
    assert.ok(!KEYED_TOPICS.has('risk'));
    assert.equal(validateSubscription('fills:btcusdt'), 'fills:BTCUSDT');
    for (const name of ['alerts:BTCUSDT', 'risk:BTCUSDT', 'fills:BTC/USDT', 'fills:'])
      assert.throws(() => validateSubscription(name), TopicError, name);
  });
});

describe('Ingest: fills', () => {
  const fill = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
    fill_id: 'f',
    symbol: 'BTCUSDT',
    side: 'BUY',
    price: 1,
    quantity: 1,
    timestamp: T,
    ...fields,
  });

  test('stored per upper-cased symbol, newest first by timestamp in ms, decimals as numbers, `id` as fill_id', () => {
    const context = setup({ fillsKept: 10 });
    const { state, ingest, send } = context;
    send('fills', {
      fill_id: 'f1',
      order_id: 'o1',
      symbol: 'btcusdt',
      side: 'BUY',
      price: '97000.5',
      quantity: '0.01',
      fee: '0.02',
      pnl: null,
      timestamp: '2026-03-01T12:00:00Z',
    });
    // The account monitor's form: `id`, a number, and Unix seconds.
    send('fills', { id: 2, symbol: 'BTCUSDT', side: 'SELL', price: 97001, quantity: 0.5, timestamp: S + 2 });
    send('fills', {
      fill_id: 'f3',
      symbol: 'BTCUSDT',
      price: 1,
      quantity: '1e-8',
      pnl: '-3',
      timestamp: T + 1000,
    });
    // Microseconds, and seconds as text.
    send('fills', { fill_id: 'f4', symbol: 'BTCUSDT', price: 1, quantity: 1, timestamp: (T + 1500) * 1000 });
    send('fills', { fill_id: 'f5', symbol: 'BTCUSDT', price: 1, quantity: 1, timestamp: String(S - 1) });
    assert.deepEqual(state.get('fills', 'BTCUSDT'), [
      { fill_id: '2', symbol: 'BTCUSDT', side: 'SELL', price: 97001, quantity: 0.5, timestamp: T + 2000 },
      { fill_id: 'f4', symbol: 'BTCUSDT', price: 1, quantity: 1, timestamp: T + 1500 },
      { fill_id: 'f3', symbol: 'BTCUSDT', price: 1, quantity: 1e-8, pnl: -3, timestamp: T + 1000 },
      {
        fill_id: 'f1',
        order_id: 'o1',
        symbol: 'BTCUSDT',
        side: 'BUY',
        price: 97000.5,
        quantity: 0.01,
        fee: 0.02,
        timestamp: T,
      },
      { fill_id: 'f5', symbol: 'BTCUSDT', price: 1, quantity: 1, timestamp: T - 1000 },
    ]);
    assert.deepEqual([...state.keys('fills')], ['BTCUSDT']);
    assert.equal(ingest.counters.messages.nats.fills, 5);
    assert.deepEqual(ingest.counters.messages.redis, {});
  });

  test('one fill_id is stored once: a second delivery replaces the first (`id` 7 and fill_id "7" are one fill)', () => {
    const { state, send } = setup();
    send('fills', fill({ fill_id: 'f1', price: 1 }));
    send('fills', fill({ fill_id: 'f1', price: 2 }));
    assert.deepEqual(
      (state.get('fills', 'BTCUSDT') as JsonObject[]).map((f) => [f.fill_id, f.price]),
      [['f1', 2]],
    );
    send('fills', fill({ fill_id: undefined, id: 7, timestamp: T + 1 }));
    send('fills', fill({ fill_id: '7', timestamp: T + 1, price: 3 }));
    assert.deepEqual(
      (state.get('fills', 'BTCUSDT') as JsonObject[]).map((f) => [f.fill_id, f.price]),
      [
        ['7', 3],
        ['f1', 2],
      ],
    );
    // Where both are sent, fill_id is the id and `id` is not stored.
    send('fills', fill({ fill_id: 'x', id: 'y', timestamp: T + 2 }));
    const [newest] = state.get('fills', 'BTCUSDT') as JsonObject[];
    assert.equal(newest.fill_id, 'x');
    assert.equal('id' in newest, false);
  });

  test('at most fillsKept per symbol: the oldest go, one older than every kept fill is not written', () => {
    const { state, send } = setup({ fillsKept: 3 });
    for (let i = 1; i <= 4; i++) send('fills', fill({ fill_id: `f${i}`, timestamp: T + i * 1000 }));
    const ids = () => (state.get('fills', 'BTCUSDT') as JsonObject[]).map((f) => f.fill_id);
    assert.deepEqual(ids(), ['f4', 'f3', 'f2']);
    const sequence = state.sequence;
    send('fills', fill({ fill_id: 'old', timestamp: T }));
    assert.equal(state.sequence, sequence, 'a fill older than every kept one changed the state');
    assert.deepEqual(ids(), ['f4', 'f3', 'f2']);
    // A late fill newer than the oldest kept takes its place.
    send('fills', fill({ fill_id: 'late', timestamp: T + 2500 }));
    assert.deepEqual(ids(), ['f4', 'f3', 'late']);
    // Another symbol has its own list.
    send('fills', fill({ fill_id: 'e1', symbol: 'ETHUSDT', timestamp: T }));
    assert.deepEqual(ids(), ['f4', 'f3', 'late']);
    assert.equal((state.get('fills', 'ETHUSDT') as JsonObject[]).length, 1);
  });

  test('a client subscribed to fills:btcusdt sees that symbol only', () => {
    const { state, send } = setup();
    send('fills', fill({ symbol: 'BTCUSDT' }));
    send('fills', fill({ symbol: 'ETHUSDT' }));
    const view = state.snapshot(buildFilter([validateSubscription('fills:btcusdt')]));
    assert.deepEqual(Object.keys(view), ['fills']);
    assert.deepEqual(Object.keys(view.fills as JsonObject), ['BTCUSDT']);
  });

  test('refused: no id, a bad id, no symbol, a timestamp that is no time, non-finite numbers, unsafe keys', () => {
    const context = setup();
    const base = JSON.stringify(fill()).slice(0, -1);
    refused(context, 'fills', fill({ fill_id: undefined }), /neither fill_id nor id/);
    refused(context, 'fills', fill({ fill_id: '' }), /invalid fills payload: \/fill_id/);
    refused(context, 'fills', fill({ fill_id: undefined, id: 1.5 }), /invalid fills payload: \/id/);
    refused(context, 'fills', fill({ fill_id: 'x'.repeat(129) }), /invalid fills payload: \/fill_id/);
    refused(context, 'fills', fill({ symbol: undefined }), /invalid fills payload: \/symbol/);
    refused(context, 'fills', fill({ symbol: 'BTC/USDT' }), /invalid fills payload: \/symbol/);
    refused(context, 'fills', fill({ timestamp: undefined }), /invalid fills payload: \/timestamp/);
    for (const timestamp of ['soon', '2026-13-45T99:00:00Z', 0, -1, '0', '-5'])
      refused(context, 'fills', fill({ timestamp }), /timestamp is no time/);
    refused(context, 'fills', fill({ timestamp: '' }), /invalid fills payload: \/timestamp/);
    refused(context, 'fills', `${base},"timestamp":1e400}`, /invalid fills payload: \/timestamp/);
    refused(context, 'fills', fill({ price: '1e400' }), /price is not a finite number/);
    refused(context, 'fills', fill({ quantity: '-1e400' }), /quantity is not a finite number/);
    refused(context, 'fills', `${base},"fee":1e400}`, /fee/);
    refused(context, 'fills', `${base},"extra":1e400}`, /extra is not a finite number/);
    refused(context, 'fills', fill({ price: 'abc' }), /invalid fills payload: \/price/);
    refused(context, 'fills', `${base},"__proto__":{"polluted":true}}`, /key "__proto__" is not allowed/);
    refused(
      context,
      'fills',
      `${base},"extra":{"constructor":{"prototype":{"polluted":true}}}}`,
      /key "constructor" is not allowed/,
    );
    refused(context, 'fills', '{"fill_id":', /not JSON/);
    refused(context, 'fills', [fill()], /invalid fills payload/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(context.state.count('fills'), 0);
    assert.equal(context.ingest.counters.invalid.nats.fills, 24);
  });

  test('"__proto__" as a symbol or a fill id is stored as data and reaches no prototype', () => {
    const { state, send } = setup();
    const before = Object.getOwnPropertyNames(Object.prototype);
    send('fills', fill({ symbol: '__proto__', fill_id: '__proto__' }));
    assert.deepEqual([...state.keys('fills')], ['__PROTO__']);
    assert.equal((state.get('fills', '__PROTO__') as JsonObject[])[0].fill_id, '__proto__');
    const view = state.snapshot(buildFilter(['fills']));
    assert.ok(Object.hasOwn(view.fills as JsonObject, '__PROTO__'));
    assert.deepEqual(Object.getOwnPropertyNames(Object.prototype), before);
  });

  test('ingest.max_record_size refuses a fill whose stored record is larger, counted by its limit', () => {
    const context = setup({ maxRecordSize: 256 });
    context.send('fills', fill({ fill_id: 'small' }));
    const error = refused(
      context,
      'fills',
      fill({ fill_id: 'big', note: 'x'.repeat(256) }),
      /max_record_size/,
    );
    assert.equal(error.limit, 'max_record_size');
    assert.deepEqual(context.ingest.counters.refused.max_record_size, { fills: 1 });
    assert.deepEqual(
      (context.state.get('fills', 'BTCUSDT') as JsonObject[]).map((f) => f.fill_id),
      ['small'],
    );
  });

  test('a fill sent with `id` is counted under its stored name fill_id', () => {
    const { state, send } = setup();
    send('fills', fill({ fill_id: undefined, id: 'abc' }));
    const stored = estimate(state.get('fills', 'BTCUSDT')!);
    assert.ok(
      state.sizeOf('fills', 'BTCUSDT') >= stored,
      `counted ${state.sizeOf('fills', 'BTCUSDT')} bytes for a stored list of ${stored}`,
    );
  });

  test('a fill list is counted at no less than its stored estimate, as trade lists are', {}, () => {
    // Every other topic is counted at exactly its stored estimate; a fill whose numeric id becomes text is not.
    const { state, send } = setup();
    send('trades:BTCUSDT', { trade_id: 1234567890123456, price: 1, quantity: 1, timestamp: T });
    assert.equal(state.sizeOf('trades', 'BTCUSDT'), estimate(state.get('trades', 'BTCUSDT')!));
    send('fills', fill({ fill_id: undefined, id: 1234567890123456 }));
    const stored = estimate(state.get('fills', 'BTCUSDT')!);
    assert.ok(
      state.sizeOf('fills', 'BTCUSDT') >= stored,
      `counted ${state.sizeOf('fills', 'BTCUSDT')} bytes for a stored list of ${stored}`,
    );
  });

  test('a timestamp past any date a client can format is no time', {}, () => {
    const context = setup();
    refused(context, 'fills', fill({ timestamp: 1e20 }), /timestamp is no time/);
    refused(
      context,
      'alerts',
      { type: 't', severity: 'INFO', message: 'm', timestamp: 1e20 },
      /timestamp is no time/,
    );
  });
});

describe('Ingest: alerts', () => {
  const accountAlert = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
    type: 'margin_ratio',
    severity: 'warning',
    symbol: 'BTCUSDT',
    message: 'margin ratio high',
    value: '0.85',
    threshold: 0.8,
    timestamp: '2026-03-01T12:00:00Z',
    ...fields,
  });
  const riskAlert = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
    level: 'critical',
    policy_id: 'p1',
    policy_name: 'Max leverage',
    policy_type: 'leverage',
    metric: 'leverage',
    metric_value: '12.5',
    threshold_value: 10,
    message: 'leverage 12.5 > 10',
    timestamp: S,
    ...fields,
  });

  test("the account monitor's form: keyed by a digest id, severity upper-cased, time in ms", () => {
    const { state, ingest, send } = setup();
    send('alerts', accountAlert());
    const [alert] = alertsOf(state);
    assert.match(String(alert.id), /^[0-9a-f]{20}$/);
    assert.deepEqual([...state.keys('alerts')], [alert.id]);
    assert.deepEqual(alert, {
      id: alert.id,
      source: 'account_monitor',
      type: 'margin_ratio',
      severity: 'WARNING',
      symbol: 'BTCUSDT',
      message: 'margin ratio high',
      value: 0.85,
      threshold: 0.8,
      timestamp: T,
    });
    assert.equal(ingest.counters.messages.nats.alerts, 1);
  });

  test("the risk manager's form: levels as severities, metric_value and threshold_value as value and threshold", () => {
    const { state, send } = setup({ alertsKept: 10 });
    send('alerts', riskAlert());
    const [alert] = alertsOf(state);
    assert.deepEqual(alert, {
      id: alert.id,
      source: 'risk_manager',
      level: 'critical',
      policy_id: 'p1',
      policy_name: 'Max leverage',
      policy_type: 'leverage',
      metric: 'leverage',
      type: 'leverage',
      severity: 'CRITICAL',
      message: 'leverage 12.5 > 10',
      value: 12.5,
      threshold: 10,
      timestamp: T,
    });
    const levels: [string, string][] = [
      ['info', 'INFO'],
      ['warning', 'WARNING'],
      ['WARNING', 'WARNING'],
      ['critical', 'CRITICAL'],
      ['emergency', 'CRITICAL'],
    ];
    for (const [index, [level, severity]] of levels.entries()) {
      send('alerts', { level, message: `m${index}`, timestamp: S + 1 + index });
      const stored = alertsOf(state).find((a) => a.message === `m${index}`);
      assert.equal(stored?.severity, severity, level);
    }
  });

  test('a risk alert without a message takes its reason, else its policy name, else its type', () => {
    const { state, send } = setup({ alertsKept: 10 });
    send('alerts', { level: 'warning', reason: 'the reason', policy_name: 'P', timestamp: S });
    send('alerts', { level: 'warning', policy_name: 'P', metric: 'drawdown', timestamp: S + 1 });
    send('alerts', { level: 'warning', type: 'custom', timestamp: S + 2 });
    send('alerts', { level: 'warning', timestamp: S + 3 });
    const byTime = alertsOf(state).sort((a, b) => (a.timestamp as number) - (b.timestamp as number));
    assert.deepEqual(
      byTime.map((a) => [a.type, a.message]),
      [
        ['risk_limit', 'the reason'],
        ['drawdown', 'P'],
        ['custom', 'custom'],
        ['risk_limit', 'risk_limit'],
      ],
    );
  });

  test('the same alert delivered twice, by either source, is stored once; another time is another alert', () => {
    const { state, send } = setup();
    send('alerts', accountAlert());
    const sequence = state.sequence;
    send('alerts', accountAlert());
    send('alerts', accountAlert(), 'redis');
    // Its decimals normalized, the payload is the same alert.
    send('alerts', accountAlert({ value: 0.85 }));
    assert.equal(state.sequence, sequence, 'a second delivery changed the state');
    assert.equal(state.count('alerts'), 1);
    send('alerts', accountAlert({ timestamp: '2026-03-01T12:00:01Z' }));
    assert.equal(state.count('alerts'), 2);
  });

  test('at most alertsKept: the oldest goes; a full book refuses one older than every alert it holds', () => {
    const { state, send } = setup({ alertsKept: 3 });
    for (let i = 1; i <= 4; i++) send('alerts', accountAlert({ message: `a${i}`, timestamp: S + i }));
    const messages = () =>
      alertsOf(state)
        .map((a) => a.message)
        .sort();
    assert.deepEqual(messages(), ['a2', 'a3', 'a4']);
    const sequence = state.sequence;
    send('alerts', accountAlert({ message: 'old', timestamp: S }));
    send('alerts', accountAlert({ message: 'as old as the oldest', timestamp: S + 2 }));
    assert.equal(state.sequence, sequence, 'an alert without a place changed the state');
    send('alerts', accountAlert({ message: 'late', timestamp: S + 2.5 }));
    assert.deepEqual(messages(), ['a3', 'a4', 'late']);
    assert.equal(state.count('alerts'), 3);
  });

  test('refused: an unknown severity or level, a timestamp that is no time, non-finite numbers, unsafe keys', () => {
    const context = setup();
    refused(context, 'alerts', accountAlert({ severity: 'PANIC' }), /severity "PANIC"/);
    refused(context, 'alerts', accountAlert({ severity: '__proto__' }), /severity "__proto__"/);
    refused(context, 'alerts', accountAlert({ severity: '' }), /invalid alerts payload: \/severity/);
    refused(context, 'alerts', accountAlert({ severity: undefined }), /invalid alerts payload: \/severity/);
    refused(context, 'alerts', accountAlert({ message: undefined }), /invalid alerts payload: \/message/);
    refused(
      context,
      'alerts',
      accountAlert({ message: 'm'.repeat(4097) }),
      /invalid alerts payload: \/message/,
    );
    refused(context, 'alerts', riskAlert({ level: 'fatal' }), /level "fatal"/);
    refused(context, 'alerts', riskAlert({ level: 'hasOwnProperty' }), /level "hasOwnProperty"/);
    refused(context, 'alerts', riskAlert({ level: 'x'.repeat(17) }), /invalid alerts payload/);
    for (const timestamp of ['soon', 0, -1])
      refused(context, 'alerts', accountAlert({ timestamp }), /timestamp is no time/);
    refused(context, 'alerts', riskAlert({ timestamp: 'yesterday' }), /timestamp is no time/);
    refused(context, 'alerts', accountAlert({ value: '1e400' }), /value is not a finite number/);
    refused(context, 'alerts', riskAlert({ metric_value: '-1e400' }), /metric_value is not a finite number/);
    const base = JSON.stringify(accountAlert()).slice(0, -1);
    refused(context, 'alerts', `${base},"threshold":1e400}`, /invalid alerts payload/);
    refused(context, 'alerts', `${base},"__proto__":{"polluted":true}}`, /key "__proto__" is not allowed/);
    const riskBase = JSON.stringify(riskAlert()).slice(0, -1);
    refused(
      context,
      'alerts',
      `${riskBase},"__proto__":{"polluted":true}}`,
      /key "__proto__" is not allowed/,
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(context.state.count('alerts'), 0);
  });

  test('refused: a risk level that names a property of Object.prototype', {}, () => {
    const context = setup();
    refused(context, 'alerts', riskAlert({ level: 'constructor' }), /level "constructor"/);
    refused(context, 'alerts', riskAlert({ level: '__proto__' }), /level "__proto__"/);
  });

  test('ingest.max_record_size refuses an alert whose stored record is larger', () => {
    const context = setup({ maxRecordSize: 256 });
    context.send('alerts', accountAlert());
    const error = refused(context, 'alerts', accountAlert({ message: 'm'.repeat(300) }), /max_record_size/);
    assert.equal(error.limit, 'max_record_size');
    assert.deepEqual(context.ingest.counters.refused.max_record_size, { alerts: 1 });
    assert.equal(context.state.count('alerts'), 1);
  });
});

describe('Ingest: an emergency stop', () => {
  const emergency = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
    level: 'emergency',
    type: 'emergency_stop',
    reason: 'daily drawdown 12%',
    triggered_by: 'drawdown_monitor',
    timestamp: S + 5,
    ...fields,
  });

  test('stores the alert and sets risk.emergency_stop, the rest of the risk record kept', () => {
    const { state, send } = setup();
    send('risk', { leverage: 2, margin_ratio: '0.5', timestamp: S });
    const sequence = state.sequence;
    send('alerts', emergency());
    assert.equal(state.sequence, sequence + 2, 'the alert and the stop: two changes');
    const [alert] = alertsOf(state);
    assert.equal(alert.source, 'risk_manager');
    assert.equal(alert.type, 'emergency_stop');
    assert.equal(alert.severity, 'CRITICAL');
    assert.equal(alert.message, 'daily drawdown 12%');
    assert.equal(alert.timestamp, T + 5000);
    assert.deepEqual(state.get('risk'), {
      leverage: 2,
      margin_ratio: 0.5,
      updated_at: S,
      emergency_stop: {
        is_stopped: true,
        stopped_at: S + 5,
        stop_reason: 'daily drawdown 12%',
        triggered_by: 'drawdown_monitor',
      },
    });
    // Later metrics keep the stop.
    send('risk', { leverage: 3, timestamp: S + 10 });
    assert.deepEqual(state.get('risk'), {
      leverage: 3,
      margin_ratio: 0.5,
      updated_at: S + 10,
      emergency_stop: {
        is_stopped: true,
        stopped_at: S + 5,
        stop_reason: 'daily drawdown 12%',
        triggered_by: 'drawdown_monitor',
      },
    });
  });

  test('without a risk record, the stop is the record; stopped_at is whole Unix seconds; a polled stop is extended', () => {
    const { state, ingest, send } = setup();
    send('alerts', emergency({ timestamp: '2026-03-01T12:00:05.900Z', triggered_by: undefined }));
    assert.deepEqual(state.get('risk'), {
      emergency_stop: { is_stopped: true, stopped_at: S + 5, stop_reason: 'daily drawdown 12%' },
    });
    ingest.replaceSingle('risk', {
      updated_at: S + 6,
      emergency_stop: { is_stopped: false, note: 'reset by ops' },
    });
    send('alerts', emergency({ timestamp: S + 7, reason: 'again' }));
    assert.deepEqual((state.get('risk') as JsonObject).emergency_stop, {
      is_stopped: true,
      note: 'reset by ops',
      stopped_at: S + 7,
      stop_reason: 'again',
      triggered_by: 'drawdown_monitor',
    });
  });

  test('both or neither under ingest.max_state_size: the alert fits alone, not with the stop', () => {
    // The sizes, measured without a limit.
    const free = setup();
    free.send('risk', { leverage: 2, timestamp: S });
    const before = free.state.bytes;
    free.send('alerts', emergency());
    const after = free.state.bytes;
    const alertSize = free.state.sizeOf('alerts', [...free.state.keys('alerts')][0]);
    assert.ok(after - 1 >= before + alertSize, 'the alert alone fits under the tighter budget');

    const exact = setup({ maxStateSize: after });
    exact.send('risk', { leverage: 2, timestamp: S });
    exact.send('alerts', emergency());
    assert.equal(exact.state.count('alerts'), 1);
    assert.equal((exact.state.get('risk') as JsonObject).emergency_stop !== undefined, true);

    const tight = setup({ maxStateSize: after - 1 });
    tight.send('risk', { leverage: 2, timestamp: S });
    const error = refused(tight, 'alerts', emergency(), /max_state_size/, 'risk');
    assert.equal(error.limit, 'max_state_size');
    assert.equal(tight.state.count('alerts'), 0, 'the alert landed without its stop');
    assert.deepEqual(tight.state.get('risk'), { leverage: 2, updated_at: S });
    assert.deepEqual(tight.ingest.counters.refused.max_state_size, { risk: 1 });
    // A refused alert is not remembered as kept: once the risk record is smaller, the same alert is taken.
    tight.ingest.replaceSingle('risk', { updated_at: S + 1 });
    tight.send('alerts', emergency());
    assert.equal(tight.state.count('alerts'), 1);
    assert.equal((tight.state.get('risk') as JsonObject).emergency_stop !== undefined, true);
  });

  test('both or neither under ingest.max_record_size: a risk record too large with the stop refuses the alert too', () => {
    const context = setup({ maxRecordSize: 256 });
    context.send('risk', { leverage: 2, pad: 'x'.repeat(150), timestamp: S });
    const risk = context.state.get('risk');
    const error = refused(
      context,
      'alerts',
      emergency({ reason: 'dd', triggered_by: 'mon' }),
      /max_record_size/,
      'risk',
    );
    assert.equal(error.limit, 'max_record_size');
    assert.equal(context.state.count('alerts'), 0);
    assert.deepEqual(context.state.get('risk'), risk);
    // The same alert at a lower level (no stop) fits: it was the stop that did not.
    context.send(
      'alerts',
      emergency({ level: 'critical', type: 'drawdown', reason: 'dd', triggered_by: 'mon' }),
    );
    assert.equal(context.state.count('alerts'), 1);
  });

  test('an emergency with no place among the kept alerts sets no stop either', () => {
    const { state, send } = setup({ alertsKept: 2 });
    send('alerts', { type: 't', severity: 'INFO', message: 'a', timestamp: S + 10 });
    send('alerts', { type: 't', severity: 'INFO', message: 'b', timestamp: S + 11 });
    const sequence = state.sequence;
    send('alerts', emergency({ timestamp: S + 1 }));
    assert.equal(state.sequence, sequence);
    assert.equal(state.get('risk'), undefined);
  });

  test('only an emergency sets the stop: another level with type "emergency_stop" is an alert', {}, () => {
    const { state, send } = setup();
    send('alerts', emergency({ level: 'info' }));
    assert.equal(state.count('alerts'), 1);
    assert.equal(state.get('risk'), undefined);
  });
});

describe('Ingest: risk metrics', () => {
  test('merged into the risk record, `timestamp` as updated_at, decimals and maps as numbers', () => {
    const { state, send } = setup();
    send('risk', {
      leverage: '2.5',
      total_equity: 1000,
      daily_pnl: null,
      position_concentration: { BTCUSDT: '0.4', ETHUSDT: 0.1 },
      limit_utilization: { leverage: 0.25 },
      timestamp: S,
    });
    assert.deepEqual(state.get('risk', SINGLE), {
      leverage: 2.5,
      total_equity: 1000,
      position_concentration: { BTCUSDT: 0.4, ETHUSDT: 0.1 },
      limit_utilization: { leverage: 0.25 },
      updated_at: S,
    });
    send('risk', { margin_ratio: 0.3, leverage: 3, timestamp: S + 1 });
    assert.deepEqual(state.get('risk'), {
      leverage: 3,
      total_equity: 1000,
      margin_ratio: 0.3,
      position_concentration: { BTCUSDT: 0.4, ETHUSDT: 0.1 },
      limit_utilization: { leverage: 0.25 },
      updated_at: S + 1,
    });
  });

  test('an older message is stale: not written, counted by source; an equal or later one is written', () => {
    const { state, ingest, send } = setup();
    send('risk', { leverage: 1, timestamp: S + 1 });
    const sequence = state.sequence;
    send('risk', { leverage: 9, timestamp: S });
    // In other units: RFC 3339 and ms, half a second before.
    send('risk', { leverage: 9, timestamp: new Date(T + 500).toISOString() });
    send('risk', { leverage: 9, timestamp: T + 500 }, 'redis');
    assert.equal(state.sequence, sequence, 'a stale risk message changed the state');
    assert.equal((state.get('risk') as JsonObject).leverage, 1);
    assert.deepEqual(ingest.counters.stale.nats, { risk: 2 });
    assert.deepEqual(ingest.counters.stale.redis, { risk: 1 });
    assert.equal(ingest.counters.messages.nats.risk, 3, 'a stale message is still a valid message');
    send('risk', { leverage: 2, timestamp: S + 1 });
    assert.equal((state.get('risk') as JsonObject).leverage, 2, 'the same time: the later message wins');
    send('risk', { leverage: 3, timestamp: T + 1500 });
    assert.deepEqual(state.get('risk'), { leverage: 3, updated_at: T + 1500 });
    assert.deepEqual(ingest.counters.stale.nats, { risk: 2 });
  });

  test("a poll's newer risk record makes an older message stale", () => {
    const { state, ingest, send } = setup();
    ingest.replaceSingle('risk', { leverage: 5, updated_at: new Date(T + 60_000).toISOString() });
    send('risk', { leverage: 1, timestamp: S + 30 });
    assert.equal((state.get('risk') as JsonObject).leverage, 5);
    assert.deepEqual(ingest.counters.stale.nats, { risk: 1 });
  });

  test('refused: non-finite numbers, unsafe keys in its maps, no timestamp, a record too large', () => {
    const context = setup({ maxRecordSize: 256 });
    refused(context, 'risk', '{"leverage":1e400,"timestamp":1}', /invalid risk payload/);
    refused(context, 'risk', { leverage: '1e400', timestamp: S }, /leverage is not a finite number/);
    refused(
      context,
      'risk',
      { position_concentration: { BTCUSDT: '1e400' }, timestamp: S },
      /position_concentration\.BTCUSDT is not a finite number/,
    );
    refused(
      context,
      'risk',
      '{"limit_utilization":{"__proto__":1},"timestamp":1}',
      /key "__proto__" is not allowed/,
    );
    refused(context, 'risk', '{"__proto__":{"polluted":1},"timestamp":1}', /key "__proto__" is not allowed/);
    refused(
      context,
      'risk',
      { position_concentration: { BTCUSDT: 'abc' }, timestamp: S },
      /invalid risk payload/,
    );
    refused(context, 'risk', { leverage: 1 }, /invalid risk payload: \/timestamp/);
    refused(context, 'risk', { leverage: 1, pad: 'x'.repeat(300), timestamp: S }, /max_record_size/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(context.state.get('risk'), undefined);
  });

  test('refused: a timestamp that is no time', {}, () => {
    const context = setup();
    context.send('risk', { leverage: 1, timestamp: S });
    refused(context, 'risk', { leverage: 2, timestamp: 'soon' }, /timestamp is no time/);
    refused(context, 'risk', { leverage: 2, timestamp: -5 }, /timestamp is no time/);
    // Stored, such a time would turn the stale check off: an older message would then overwrite.
    assert.equal((context.state.get('risk') as JsonObject).updated_at, S);
  });
});

describe('isStaleOrder: which of two versions of an order is the later', () => {
  /** Whole seconds (as the gRPC poll sends), and ms in that second. */
  const SEC = 1_772_366_400;
  const MS = SEC * 1000;
  const order = (state: string, updatedAt?: Json, filled?: number): JsonObject => ({
    order_id: 'o',
    symbol: 'BTCUSDT',
    state,
    ...(updatedAt === undefined ? {} : { updated_at: updatedAt }),
    ...(filled === undefined ? {} : { filled_quantity: filled }),
  });
  const cases: [string, Json | undefined, JsonObject, boolean][] = [
    ['nothing held', undefined, order('NEW'), false],
    ['null held', null, order('NEW'), false],
    ['a list held', [], order('NEW'), false],
    ['older ms', order('NEW', MS + 500), order('NEW', MS + 400), true],
    ['newer ms', order('NEW', MS + 400), order('NEW', MS + 500), false],
    ['distinct times win over the lifecycle', order('NEW', MS + 500), order('FILLED', MS + 400), true],
    [
      'distinct times win over the lifecycle, newer',
      order('FILLED', MS + 400),
      order('NEW', MS + 500),
      false,
    ],
    [
      'seconds within the held ms second: lifecycle, back',
      order('PARTIALLY_FILLED', MS + 500),
      order('SUBMITTED', SEC),
      true,
    ],
    [
      'seconds within the held ms second: lifecycle, on',
      order('SUBMITTED', MS + 500),
      order('FILLED', SEC),
      false,
    ],
    [
      'ms within the held seconds: lifecycle, on',
      order('SUBMITTED', SEC),
      order('PARTIALLY_FILLED', MS + 999),
      false,
    ],
    ['ms within the held seconds: lifecycle, back', order('FILLED', SEC), order('NEW', MS + 999), true],
    ['seconds of the next second are later', order('FILLED', MS + 500), order('NEW', SEC + 1), false],
    ['seconds of the previous second are older', order('NEW', MS + 500), order('FILLED', SEC - 1), true],
    ['a whole-second ms time is a second too', order('FILLED', MS), order('NEW', MS + 999), true],
    [
      'RFC 3339 whole second',
      order('PARTIALLY_FILLED', MS + 999),
      order('NEW', new Date(MS).toISOString()),
      true,
    ],
    ['RFC 3339 with ms', order('NEW', MS + 999), order('FILLED', new Date(MS + 998).toISOString()), true],
    ['microseconds', order('NEW', (MS + 500) * 1000), order('NEW', MS + 400), true],
    ['tie: the lifecycle', order('PARTIALLY_FILLED', MS + 1), order('SUBMITTED', MS + 1), true],
    [
      'tie, same state: more filled held',
      order('PARTIALLY_FILLED', MS + 1, 0.5),
      order('PARTIALLY_FILLED', MS + 1, 0.3),
      true,
    ],
    [
      'tie, same state: more filled incoming',
      order('PARTIALLY_FILLED', MS + 1, 0.3),
      order('PARTIALLY_FILLED', MS + 1, 0.5),
      false,
    ],
    ['tie, all equal: the later message wins', order('NEW', MS + 1, 0), order('NEW', MS + 1, 0), false],
    ['tie, no filled quantity is 0', order('NEW', MS + 1, 0.1), order('NEW', MS + 1), true],
    ['no times: NEW after SUBMITTED', order('SUBMITTED'), order('NEW'), true],
    ['no times: SUBMITTED after PARTIALLY_FILLED', order('PARTIALLY_FILLED'), order('SUBMITTED'), true],
    ['no times: PARTIALLY_FILLED after FILLED', order('FILLED'), order('PARTIALLY_FILLED'), true],
    ['no times: NEW after CANCELED', order('CANCELED'), order('NEW'), true],
    ['no times: FILLED after NEW', order('NEW'), order('FILLED'), false],
    ['no times: PENDING is NEW', order('PENDING'), order('NEW'), false],
    ['no times: an unknown state is NEW', order('SUBMITTED'), order('ODD'), true],
    ['no times: states in any case', order('filled'), order('new'), true],
    [
      'no times: terminal states rank alike, filled decides',
      order('FILLED', undefined, 1),
      order('CANCELED', undefined, 0),
      true,
    ],
    ['no times: terminal states rank alike, equal', order('CANCELED'), order('FILLED'), false],
    ['one time only: the lifecycle', order('SUBMITTED', MS), order('NEW'), true],
    ['one time only, other side', order('SUBMITTED'), order('NEW', MS + 5000), true],
    ['a time that is no time: the lifecycle', order('SUBMITTED', 'soon'), order('NEW', MS), true],
    [
      'no times, more filled held',
      order('PARTIALLY_FILLED', undefined, 2),
      order('PARTIALLY_FILLED', undefined, 1),
      true,
    ],
  ];
  for (const [name, current, incoming, stale] of cases) {
    test(name, () => {
      assert.equal(isStaleOrder(current, incoming), stale);
    });
  }
});

describe('Ingest: stale orders from messages and polls', () => {
  const SEC = 1_772_366_400;
  const MS = SEC * 1000;
  const envelope = (order: JsonObject) => ({ order, update_type: 'update' });

  test('an older order message is not written, counted stale under its source and still as a message', () => {
    const { state, ingest, send } = setup();
    send(
      'orders',
      envelope({
        order_id: 'o1',
        symbol: 'btcusdt',
        state: 'PARTIALLY_FILLED',
        filled_quantity: '0.5',
        updated_at: MS + 500,
      }),
    );
    const held = state.get('orders', 'o1');
    const sequence = state.sequence;
    send('orders', envelope({ order_id: 'o1', symbol: 'BTCUSDT', state: 'SUBMITTED', updated_at: MS + 400 }));
    send(
      'orders:BTCUSDT',
      { order_id: 'o1', symbol: 'BTCUSDT', state: 'NEW', updated_at: MS + 300 },
      'redis',
    );
    // Same instant, less filled.
    send('orders', {
      order_id: 'o1',
      symbol: 'BTCUSDT',
      state: 'PARTIALLY_FILLED',
      filled_quantity: 0.2,
      updated_at: MS + 500,
    });
    assert.equal(state.sequence, sequence, 'a stale order changed the state');
    assert.deepEqual(state.get('orders', 'o1'), held);
    assert.deepEqual(ingest.counters.stale.nats, { orders: 2 });
    assert.deepEqual(ingest.counters.stale.redis, { orders: 1 });
    assert.equal(ingest.counters.messages.nats.orders, 3);
    assert.equal(ingest.counters.messages.redis.orders, 1);
    send('orders', {
      order_id: 'o1',
      symbol: 'BTCUSDT',
      state: 'FILLED',
      filled_quantity: 1,
      updated_at: MS + 600,
    });
    assert.equal((state.get('orders', 'o1') as JsonObject).state, 'FILLED');
    assert.deepEqual(ingest.counters.stale.nats, { orders: 2 });
  });

  test("a poll's whole-second order does not undo a NATS update within that second; counted as stale poll records", () => {
    const { state, ingest, send } = setup();
    send('orders', {
      order_id: 'o1',
      symbol: 'BTCUSDT',
      state: 'PARTIALLY_FILLED',
      filled_quantity: 0.5,
      updated_at: MS + 500,
    });
    const held = state.get('orders', 'o1');
    ingest.replaceSection(
      'orders',
      [
        { order_id: 'o1', symbol: 'BTCUSDT', state: 'SUBMITTED', filled_quantity: 0, updated_at: SEC },
        { order_id: 'o2', symbol: 'BTCUSDT', state: 'NEW', updated_at: SEC },
      ],
      0,
    );
    assert.deepEqual(state.get('orders', 'o1'), held, 'the stale polled order overwrote a later one');
    assert.equal((state.get('orders', 'o2') as JsonObject).state, 'NEW');
    assert.deepEqual(ingest.counters.stale.poll, { orders: 1 });
    assert.equal(ingest.counters.messages.poll.orders, 2);
    assert.deepEqual(ingest.counters.stale.nats, {});
    // Returned, the stale order is not removed either, even by a complete list begun after every write.
    ingest.replaceSection(
      'orders',
      [{ order_id: 'o1', symbol: 'BTCUSDT', state: 'NEW', updated_at: SEC }],
      Number.MAX_SAFE_INTEGER,
    );
    assert.deepEqual(state.get('orders', 'o1'), held);
    assert.equal(state.get('orders', 'o2'), undefined);
    assert.deepEqual(ingest.counters.stale.poll, { orders: 2 });
    // A later lifecycle in the same second, or a later second, is written.
    ingest.replaceSection(
      'orders',
      [{ order_id: 'o1', symbol: 'BTCUSDT', state: 'FILLED', filled_quantity: 1, updated_at: SEC }],
      0,
    );
    assert.equal((state.get('orders', 'o1') as JsonObject).state, 'FILLED');
    ingest.replaceSection(
      'orders',
      [{ order_id: 'o1', symbol: 'BTCUSDT', state: 'CANCELED', updated_at: SEC + 1 }],
      0,
    );
    assert.equal((state.get('orders', 'o1') as JsonObject).state, 'CANCELED');
    assert.deepEqual(ingest.counters.stale.poll, { orders: 2 });
  });

  test('a NATS update older than the polled order is stale too', () => {
    const { state, ingest, send } = setup();
    ingest.replaceSection(
      'orders',
      [{ order_id: 'o1', symbol: 'BTCUSDT', state: 'FILLED', updated_at: SEC + 1 }],
      0,
    );
    send('orders', { order_id: 'o1', symbol: 'BTCUSDT', state: 'PARTIALLY_FILLED', updated_at: MS + 900 });
    assert.equal((state.get('orders', 'o1') as JsonObject).state, 'FILLED');
    assert.deepEqual(ingest.counters.stale.nats, { orders: 1 });
    assert.deepEqual(ingest.counters.stale.poll, {});
  });
});
