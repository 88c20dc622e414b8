import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  accountFromResponse,
  BackendResponseError,
  ordersFromResponse,
  riskFromResponses,
  strategiesFromResponses,
} from '../../src/backends.ts';
import { toMillis } from '../../src/ingest/timestamps.ts';
import {
  emergencyStopResponse,
  GO_ZERO_TIME,
  grpcOrder,
  riskMetricsResponse,
} from '../helpers/backends-grpc.ts';
import { accountBody } from '../helpers/backends-http.ts';

/** Unit tests of src/backends.ts: response validation and the mapping into state records. No I/O. */

/** Asserts that `run` throws a BackendResponseError whose message matches `message`. */
function rejects(run: () => unknown, message: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof BackendResponseError, `a BackendResponseError, got ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
}

/** No field of a record (at any depth) is undefined: a merge patch cannot carry one. */
function assertNoUndefined(value: unknown, path = '(root)'): void {
  assert.notEqual(value, undefined, `${path} is undefined`);
  if (value !== null && typeof value === 'object') {
    for (const [key, field] of Object.entries(value)) assertNoUndefined(field, `${path}.${key}`);
  }
}

describe('ordersFromResponse', () => {
  test('valid orders become records with every field, as copies', () => {
    const order = grpcOrder({ state: 'CANCELED', updated_at: 1_700_000_123 });
    const response = { orders: [order] };
    const records = ordersFromResponse(response);
    assert.deepEqual(records, [order]);
    assert.notEqual(records[0], order, 'a copy, not the decoded object');
    assert.deepEqual(ordersFromResponse({ orders: [] }), []);
  });

  test('each order state name of the proto is accepted', () => {
    for (const state of [
      'STATE_UNSPECIFIED',
      'NEW',
      'SUBMITTED',
      'PARTIALLY_FILLED',
      'FILLED',
      'CANCELED',
      'REJECTED',
      'EXPIRED',
    ]) {
      assert.equal(ordersFromResponse({ orders: [grpcOrder({ state })] })[0].state, state);
    }
  });

  test('wrong shapes and values are rejected, naming the place', () => {
    rejects(() => ordersFromResponse({}), /^GetOrdersResponse: \/orders/);
    rejects(() => ordersFromResponse(null), /^GetOrdersResponse: /);
    rejects(() => ordersFromResponse({ orders: [grpcOrder({ state: 'BOGUS' })] }), /\/orders\/0\/state/);
    rejects(() => ordersFromResponse({ orders: [grpcOrder({ state: 4 })] }), /\/orders\/0\/state/);
    rejects(
      () => ordersFromResponse({ orders: [grpcOrder(), grpcOrder({ order_id: '' })] }),
      /\/orders\/1\/order_id/,
    );
    rejects(() => ordersFromResponse({ orders: [grpcOrder({ symbol: '' })] }), /\/orders\/0\/symbol/);
    rejects(() => ordersFromResponse({ orders: [grpcOrder({ quantity: '0.5' })] }), /\/orders\/0\/quantity/);
    const { fee_asset: _, ...missing } = grpcOrder();
    rejects(() => ordersFromResponse({ orders: [missing] }), /\/orders\/0\/fee_asset/);
  });
});

describe('riskFromResponses', () => {
  test('the metrics, their timestamp as updated_at, and the emergency stop', () => {
    const risk = riskFromResponses(
      riskMetricsResponse({}, 1_700_000_100),
      emergencyStopResponse({ is_stopped: true, stopped_at: 1_700_000_050, stop_reason: 'manual' }),
    );
    assert.equal(risk.margin_ratio, 0.25);
    assert.deepEqual(risk.position_concentration, { BTCUSDT: 0.6, ETHUSDT: 0.4 });
    assert.equal(risk.updated_at, 1_700_000_100);
    assert.deepEqual(risk.emergency_stop, {
      is_stopped: true,
      stopped_at: 1_700_000_050,
      stop_reason: 'manual',
      triggered_by: '',
      orders_canceled: 0,
      positions_closed: 0,
      completed: false,
    });
  });

  test("Go's zero time (-62135596800) and 0 mean absent; real times are kept", () => {
    const goZero = riskFromResponses(riskMetricsResponse(), emergencyStopResponse());
    assert.equal('stopped_at' in (goZero.emergency_stop as object), false);
    assert.equal('completed_at' in (goZero.emergency_stop as object), false);
    const zero = riskFromResponses(
      riskMetricsResponse(),
      emergencyStopResponse({ stopped_at: 0, completed_at: 0 }),
    );
    assert.equal('stopped_at' in (zero.emergency_stop as object), false);
    assert.equal('completed_at' in (zero.emergency_stop as object), false);
    const done = riskFromResponses(
      riskMetricsResponse(),
      emergencyStopResponse({ stopped_at: GO_ZERO_TIME, completed: true, completed_at: 1_700_000_200 }),
    );
    assert.equal((done.emergency_stop as Record<string, unknown>).completed_at, 1_700_000_200);
    assert.equal('stopped_at' in (done.emergency_stop as object), false);
  });

  test('missing or mistyped parts are rejected', () => {
    rejects(
      () => riskFromResponses({ timestamp: 1 }, emergencyStopResponse()),
      /^RiskMetricsResponse: \/metrics/,
    );
    rejects(
      () => riskFromResponses(riskMetricsResponse({ open_positions: 1.5 }), emergencyStopResponse()),
      /\/metrics\/open_positions/,
    );
    rejects(
      () =>
        riskFromResponses(
          riskMetricsResponse({ position_concentration: { BTCUSDT: 'high' } }),
          emergencyStopResponse(),
        ),
      /\/metrics\/position_concentration/,
    );
    rejects(
      () => riskFromResponses(riskMetricsResponse(), { status: null }),
      /^EmergencyStopStatusResponse: \/status/,
    );
    rejects(
      () => riskFromResponses(riskMetricsResponse(), emergencyStopResponse({ is_stopped: 'yes' })),
      /\/status\/is_stopped/,
    );
  });
});

describe('accountFromResponse', () => {
  test('decimals as strings become numbers; balances, details, pnl and the USD total', () => {
    const { account } = accountFromResponse(accountBody());
    assert.deepEqual(account.balances, { USDT: 1000.5, BTC: 0.5 });
    assert.equal(account.total_balance, 26000.5);
    assert.equal(account.unrealized_pnl, -3.25);
    assert.deepEqual(account.pnl, { realized_pnl: 12.5, unrealized_pnl: -3.25 });
    assert.deepEqual(account.balance_details, {
      USDT: { free: 900.5, locked: 100, total: 1000.5, usd_value: 1000.5 },
      BTC: { free: 0.5, locked: 0, total: 0.5, usd_value: 25000 },
    });
    assert.equal(account.updated_at, '2024-01-01T00:00:00Z');
    assertNoUndefined(account);
  });

  test('positions: side from the sign, absolute quantity, mark_price from current_price, zero skipped', () => {
    const { positions } = accountFromResponse(accountBody());
    assert.deepEqual(positions, [
      {
        symbol: 'BTCUSDT',
        side: 'SHORT',
        quantity: 0.25,
        entry_price: 50000,
        mark_price: 49000,
        unrealized_pnl: 250,
        realized_pnl: 0,
        total_fees: 1.5,
        updated_at: '2024-01-01T00:00:00Z',
      },
      {
        symbol: 'ETHUSDT',
        side: 'LONG',
        quantity: 2,
        entry_price: 3000,
        mark_price: 3100,
        unrealized_pnl: 200,
      },
    ]);
    for (const position of positions) assertNoUndefined(position);
  });

  test('total_balance only when every balance has a usd_value', () => {
    const partial = accountFromResponse(
      accountBody({ balances: { USDT: { total: '5', usd_value: '5' }, DOGE: { total: '100' } } }),
    );
    assert.equal('total_balance' in partial.account, false);
    assert.deepEqual(partial.account.balances, { USDT: 5, DOGE: 100 });
    const first = accountFromResponse(
      accountBody({ balances: { DOGE: { total: '100' }, USDT: { total: '5', usd_value: '5' } } }),
    );
    assert.equal('total_balance' in first.account, false, 'whatever the order of the balances');
  });

  test('numbers, exponents and negative decimals are accepted', () => {
    const { account, positions } = accountFromResponse(
      accountBody({
        pnl: { daily: -1.5, total: '-2.5e2' },
        balances: { USDT: { total: 7, usd_value: '7E0' } },
        positions: { adausdt: { quantity: -3, current_price: '0.25' } },
      }),
    );
    assert.deepEqual(account.pnl, { daily: -1.5, total: -250 });
    assert.equal(account.total_balance, 7);
    assert.deepEqual(positions, [{ symbol: 'ADAUSDT', side: 'SHORT', quantity: 3, mark_price: 0.25 }]);
  });

  test('strings that are not plain decimals are rejected', () => {
    for (const total of ['abc', '', '1,000', '.5', '1.', ' 1', '0x10', 'NaN', 'Infinity', '1e', '--1']) {
      rejects(
        () => accountFromResponse(accountBody({ balances: { USDT: { total } } })),
        /^GET \/api\/account: \/balances\/USDT\/total/,
      );
    }
  });

  test('a decimal beyond the range of a double is rejected, not stored as Infinity', () => {
    // JSON has no Infinity: a state holding one would reach clients as null (a deletion in a merge patch).
    let mapped: ReturnType<typeof accountFromResponse> | undefined;
    try {
      mapped = accountFromResponse(accountBody({ balances: { USDT: { total: '1e400', usd_value: '1' } } }));
    } catch (error) {
      assert.ok(error instanceof BackendResponseError);
      return;
    }
    assert.ok(
      Number.isFinite((mapped.account.balances as Record<string, number>).USDT),
      `"1e400" became ${(mapped.account.balances as Record<string, number>).USDT}`,
    );
  });

  test('missing sections and mistyped fields are rejected', () => {
    const { balances: _, ...noBalances } = accountBody();
    rejects(() => accountFromResponse(noBalances), /\/balances/);
    rejects(() => accountFromResponse(accountBody({ pnl: { total: true } })), /\/pnl\/total/);
    rejects(
      () => accountFromResponse(accountBody({ positions: { BTCUSDT: { entry_price: '1' } } })),
      /\/positions\/BTCUSDT\/quantity/,
    );
    rejects(() => accountFromResponse(accountBody({ timestamp: { at: 1 } })), /\/timestamp/);
    rejects(() => accountFromResponse('[]'), /^GET \/api\/account: /);
  });
});

describe('strategiesFromResponses', () => {
  test("one record per strategy name, with its metrics and the engine's mode", () => {
    const records = strategiesFromResponses(
      { mode: 'simulation', active_strategies: ['a', 'b'] },
      {
        strategies: {
          momentum: { pnl: 1, trades: 2, last_error: null, nested: { a: 1 } },
          carry: { id: 'other', name: 'other', mode: 'live', win_rate: 0.5 },
        },
      },
    );
    assert.deepEqual(records, [
      { pnl: 1, trades: 2, nested: { a: 1 }, id: 'momentum', name: 'momentum', mode: 'simulation' },
      { id: 'carry', name: 'carry', mode: 'simulation', win_rate: 0.5 },
    ]);
    assert.deepEqual(strategiesFromResponses({ mode: 'live' }, { strategies: {} }), []);
  });

  test('a mode outside simulation/live/observation and wrong shapes are rejected', () => {
    rejects(() => strategiesFromResponses({ mode: 'turbo' }, { strategies: {} }), /^GET \/status: \/mode/);
    rejects(() => strategiesFromResponses({}, { strategies: {} }), /^GET \/status: \/mode/);
    rejects(
      () => strategiesFromResponses({ mode: 'live', active_strategies: 1.5 }, { strategies: {} }),
      /^GET \/status: \/active_strategies/,
    );
    rejects(
      () => strategiesFromResponses({ mode: 'live' }, { strategies: ['x'] }),
      /^GET \/api\/service-info: \/strategies/,
    );
    rejects(() => strategiesFromResponses({ mode: 'live' }, { strategies: { x: 5 } }), /\/strategies\/x/);
    rejects(() => strategiesFromResponses({ mode: 'live' }, {}), /^GET \/api\/service-info: \/strategies/);
  });
});

describe('toMillis', () => {
  test('Unix seconds, milliseconds and microseconds', () => {
    assert.equal(toMillis(1_700_000_000), 1_700_000_000_000);
    assert.equal(toMillis(1_700_000_000.5), 1_700_000_000_500);
    assert.equal(toMillis(1_700_000_000_123), 1_700_000_000_123);
    assert.equal(toMillis(1_700_000_000_123_456), 1_700_000_000_123.456);
    assert.equal(toMillis(1), 1000, 'one second after the epoch');
  });

  test('ISO strings and numeric strings', () => {
    assert.equal(toMillis('2024-01-01T00:00:00Z'), Date.UTC(2024, 0, 1));
    assert.equal(toMillis('2024-01-01T00:00:00.250+01:00'), Date.UTC(2023, 11, 31, 23, 0, 0, 250));
    assert.equal(toMillis('1700000000'), 1_700_000_000_000);
    assert.equal(toMillis('1700000000123'), 1_700_000_000_123);
    assert.equal(toMillis('1700000000123456'), 1_700_000_000_123.456);
  });

  test('invalid values are undefined', () => {
    for (const value of [
      undefined,
      null,
      true,
      {},
      [],
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      0,
      -1,
      GO_ZERO_TIME,
      'abc',
      '',
      '2024-13-45T00:00:00Z',
    ]) {
      assert.equal(toMillis(value), undefined, `toMillis(${JSON.stringify(value)})`);
    }
  });

  test('a short numeric string means what the same number means', () => {
    // '1' is one second after the epoch like 1; '0' and '-5' are no time like 0 and -5.
    for (const text of ['1', '12', '0', '-5', '12345']) {
      assert.equal(toMillis(text), toMillis(Number(text)), `toMillis(${JSON.stringify(text)})`);
    }
  });

  test("Go's zero time as an ISO string is no time, like its number", () => {
    assert.equal(toMillis('0001-01-01T00:00:00Z'), toMillis(GO_ZERO_TIME));
  });
});
