import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { SourceName } from '../../src/backends.ts';
import type { JsonObject } from '../../src/client.ts';
import type { Topic } from '../../src/topics.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import {
  emergencyStopResponse,
  GrpcBackend,
  GrpcFailure,
  grpcOrder,
  hangGrpc,
  riskMetricsResponse,
} from '../helpers/backends-grpc.ts';
import {
  accountBody,
  HttpBackend,
  type HttpHandler,
  hangHttp,
  json,
  strategyRoutes,
} from '../helpers/backends-http.ts';
import { freshPoll, source, sourceConfig, stateStatus } from '../helpers/backends-poller.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * Every way a poll can fail: HTTP 5xx, connection refused, malformed JSON, wrong types, a 401, gRPC errors and
 * values the ingest rejects. Each time the section's last known data stays exactly as it was, the source is
 * degraded with the reason in last_error, and stale_since is set. The breakers here never open (a high volume
 * threshold), so every poll reaches its backend.
 */

let redis: TestRedis;
let grpcBackend: GrpcBackend;
let account: HttpBackend;
let strategy: HttpBackend;
let running: RunningApp;

const NEVER_OPEN = { volume_threshold: 1000 };
const GOOD_ACCOUNT = json(accountBody());

before(async () => {
  redis = await TestRedis.start();
  grpcBackend = await GrpcBackend.start({
    GetOrders: () => ({ orders: [grpcOrder({ order_id: 'o-1' }), grpcOrder({ order_id: 'o-2' })] }),
    GetRiskMetrics: () => riskMetricsResponse(),
    GetEmergencyStopStatus: () => emergencyStopResponse(),
  });
  account = await HttpBackend.start({ '/api/account': GOOD_ACCOUNT });
  strategy = await HttpBackend.start(strategyRoutes());
  running = await startApp(redis.url, {
    backend_services: {
      order_execution: sourceConfig(grpcBackend.address, { breaker: NEVER_OPEN }),
      risk_manager: sourceConfig(grpcBackend.address, { breaker: NEVER_OPEN }),
      account_monitor: sourceConfig(account.url, { breaker: NEVER_OPEN }),
      strategy_engine: sourceConfig(strategy.url, { api_key: 'wrong-key', breaker: NEVER_OPEN }),
    },
  });
  await waitReady(running.app);
});

after(async () => {
  try {
    await running?.close();
    grpcBackend?.close();
    await account?.close();
    await strategy?.close();
  } finally {
    await redis?.kill();
  }
});

/** Everything of `topics` the state holds, as plain data. */
function sections(topics: Topic[]): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const topic of topics) {
    result[topic] = [...running.app.state.keys(topic)].map((key) => [
      key,
      structuredClone(running.app.state.get(topic, key)),
    ]);
  }
  return result;
}

const SOURCE_TOPICS: Record<Exclude<SourceName, 'market_data'>, Topic[]> = {
  order_execution: ['orders'],
  risk_manager: ['risk'],
  account_monitor: ['account', 'positions'],
  strategy_engine: ['strategies'],
};

/**
 * Polls `name` successfully (`restore`), then after `breakIt` once more: that poll must fail with `error`,
 * leave the source's sections exactly as they were, and mark the source stale.
 */
async function assertFailureKeepsData(
  name: Exclude<SourceName, 'market_data'>,
  restore: () => void,
  breakIt: () => void,
  error: RegExp,
  outcome: 'failure' | 'timeout' = 'failure',
): Promise<void> {
  const polled = source(running.app, name);
  restore();
  await freshPoll(running.app, name);
  assert.equal(stateStatus(running.app, name)?.status, 'ok', `${name} answers before the failure`);
  assert.equal(stateStatus(running.app, name)?.stale_since, undefined);
  const before = sections(SOURCE_TOPICS[name]);
  assert.ok(
    Object.values(before).some((entries) => (entries as unknown[]).length > 0),
    'there is data to keep',
  );

  breakIt();
  const count = polled.counts[outcome];
  await freshPoll(running.app, name);
  assert.equal(polled.counts[outcome], count + 1, `counted as ${outcome}`);
  const status = stateStatus(running.app, name)!;
  assert.equal(status.status, 'degraded');
  assert.match(String(status.last_error), error);
  assert.equal(typeof status.stale_since, 'string', 'stale_since is set');
  assert.ok(!Number.isNaN(Date.parse(String(status.stale_since))), 'stale_since is an ISO time');
  assert.deepEqual(sections(SOURCE_TOPICS[name]), before, 'the last known data is unchanged');
  restore();
}

describe('HTTP failures keep the last known data', () => {
  const restoreAccount = () => {
    account.routes['/api/account'] = GOOD_ACCOUNT;
  };
  const breakAccount = (handler: HttpHandler) => () => {
    account.routes['/api/account'] = handler;
  };

  test('HTTP 500 and 503', async () => {
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(json({ error: 'boom' }, 500)),
      /GET \/api\/account answered 500/,
    );
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(json({ error: 'maintenance' }, 503)),
      /answered 503/,
    );
  });

  test('a malformed JSON body', async () => {
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(() => ({ raw: '{"pnl": {"realized_pnl": "1"}, "balances": ' })),
      /GET \/api\/account: body is not valid JSON/,
    );
  });

  test('wrong types: a balance total "abc", a quantity that is an object, a missing section', async () => {
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(json(accountBody({ balances: { USDT: { total: 'abc' } } }))),
      /GET \/api\/account: \/balances\/USDT\/total/,
    );
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(json(accountBody({ positions: { BTCUSDT: { quantity: { value: 1 } } } }))),
      /\/positions\/BTCUSDT\/quantity/,
    );
    const { positions: _, ...noPositions } = accountBody();
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(json(noPositions)),
      /GET \/api\/account: .*positions/,
    );
  });

  test('decimals as strings, numbers and exponents are all accepted', async () => {
    account.routes['/api/account'] = json(
      accountBody({
        pnl: { realized_pnl: 1.5, unrealized_pnl: '2E1' },
        balances: { USDT: { total: '1e3', usd_value: 1000 }, ETH: { total: 2, usd_value: '-0.5' } },
        positions: { XRPUSDT: { quantity: '-10.25', current_price: '0.5' } },
        timestamp: '2024-02-01T00:00:00Z', // newer than GOOD_ACCOUNT's
      }),
    );
    await freshPoll(running.app, 'account_monitor');
    assert.equal(stateStatus(running.app, 'account_monitor')?.status, 'ok');
    const record = running.app.state.get('account') as JsonObject;
    assert.deepEqual(record.balances, { USDT: 1000, ETH: 2 });
    assert.equal(record.total_balance, 999.5);
    assert.equal(record.unrealized_pnl, 20);
    assert.deepEqual(running.app.state.get('positions', 'XRPUSDT'), {
      symbol: 'XRPUSDT',
      side: 'SHORT',
      quantity: 10.25,
      mark_price: 0.5,
    });
    assert.deepEqual(
      [...running.app.state.keys('positions')],
      ['XRPUSDT'],
      'the full list replaced the others',
    );
  });

  test('a position symbol the state cannot key is rejected whole: neither account nor positions change', async () => {
    await assertFailureKeepsData(
      'account_monitor',
      restoreAccount,
      breakAccount(
        json(
          accountBody({ timestamp: '2030-01-01T00:00:00Z', positions: { 'BTC/USDT': { quantity: '1' } } }),
        ),
      ),
      /positions/,
    );
  });

  test('a 401 from strategy-engine is a configuration error naming backend_services.strategy_engine.api_key', async () => {
    const good = strategyRoutes();
    const restore = () => {
      strategy.routes = { ...good };
    };
    const unauthorized = (status: number) => () => {
      strategy.routes = {
        ...good,
        '/status': (request) =>
          request.headers['x-api-key'] === 'right-key'
            ? { body: { mode: 'live' } }
            : { status, body: { error: 'invalid api key' } },
      };
    };
    await assertFailureKeepsData(
      'strategy_engine',
      restore,
      unauthorized(401),
      /GET \/status answered 401: configuration error, check backend_services\.strategy_engine\.api_key/,
    );
    await assertFailureKeepsData(
      'strategy_engine',
      restore,
      unauthorized(403),
      /answered 403: configuration error, check backend_services\.strategy_engine\.api_key/,
    );
  });

  test('strategy-engine: a mode outside the enum, a strategy list of the wrong shape', async () => {
    const good = strategyRoutes();
    await assertFailureKeepsData(
      'strategy_engine',
      () => {
        strategy.routes = { ...good };
      },
      () => {
        strategy.routes = { ...good, '/status': json({ mode: 'turbo' }) };
      },
      /GET \/status: \/mode/,
    );
    await assertFailureKeepsData(
      'strategy_engine',
      () => {
        strategy.routes = { ...good };
      },
      () => {
        strategy.routes = { ...good, '/api/service-info': json({ strategies: ['momentum'] }) };
      },
      /GET \/api\/service-info: \/strategies/,
    );
  });
});

describe('gRPC failures keep the last known data', () => {
  const goodOrders = () => {
    grpcBackend.handlers.GetOrders = () => ({
      orders: [grpcOrder({ order_id: 'o-1' }), grpcOrder({ order_id: 'o-2', state: 'SUBMITTED' })],
    });
  };

  test('a status error from the service', async () => {
    await assertFailureKeepsData(
      'order_execution',
      goodOrders,
      () => {
        grpcBackend.handlers.GetOrders = () => {
          throw new GrpcFailure(grpc.status.UNAVAILABLE, 'order book rebuilding');
        };
      },
      /GetOrders: order book rebuilding/,
    );
  });

  test('wrong values: an empty order_id, a state number outside the enum', async () => {
    await assertFailureKeepsData(
      'order_execution',
      goodOrders,
      () => {
        grpcBackend.handlers.GetOrders = () => ({
          orders: [grpcOrder({ order_id: 'o-9' }), grpcOrder({ order_id: '' })],
        });
      },
      /GetOrdersResponse: \/orders\/1\/order_id/,
    );
    await assertFailureKeepsData(
      'order_execution',
      goodOrders,
      () => {
        grpcBackend.handlers.GetOrders = () => ({ orders: [grpcOrder({ order_id: 'o-1', state: 99 })] });
      },
      /GetOrdersResponse: \/orders\/0\/state/,
    );
  });

  test('an order the state cannot key (symbol with a slash) fails the whole poll: nothing applied or removed', async () => {
    await assertFailureKeepsData(
      'order_execution',
      goodOrders,
      () => {
        grpcBackend.handlers.GetOrders = () => ({
          orders: [
            grpcOrder({ order_id: 'o-1', price: 1 }),
            grpcOrder({ order_id: 'o-3', symbol: 'BTC/USDT' }),
          ],
        });
      },
      /invalid orders payload/,
    );
  });

  test('risk-manager: one of its two calls fails, or its metrics are missing', async () => {
    const good = () => {
      grpcBackend.handlers.GetRiskMetrics = () => riskMetricsResponse();
      grpcBackend.handlers.GetEmergencyStopStatus = () => emergencyStopResponse();
    };
    await assertFailureKeepsData(
      'risk_manager',
      good,
      () => {
        grpcBackend.handlers.GetEmergencyStopStatus = () => {
          throw new GrpcFailure(grpc.status.INTERNAL, 'stop store unreachable');
        };
      },
      /GetEmergencyStopStatus: stop store unreachable/,
    );
    await assertFailureKeepsData(
      'risk_manager',
      good,
      () => {
        grpcBackend.handlers.GetRiskMetrics = () => ({ timestamp: 1_800_000_000 });
      },
      /RiskMetricsResponse: \/metrics/,
    );
  });
});

describe('a hanging backend is always a timeout', () => {
  /**
   * Every poll of a backend that never answers must end as a `timeout` with "timed out after Xms" (the outcome
   * label of dashboard_backend_requests_total, and last_error). Many short polls, because the way it can go
   * wrong is a race between the poller's abort timer and the gRPC deadline set from a second Date.now().
   */
  const POLLS = { order_execution: 200, account_monitor: 50 } as const;

  test('many polls of a hanging gRPC and a hanging HTTP backend: each a timeout', async (t) => {
    const hungGrpc = await GrpcBackend.start({ GetOrders: hangGrpc });
    const hungHttp = await HttpBackend.start({ '/api/account': hangHttp }).catch((error) => {
      hungGrpc.close();
      throw error;
    });
    const app = await startApp(redis.url, {
      backend_services: {
        order_execution: sourceConfig(hungGrpc.address, { timeout: '10ms', breaker: NEVER_OPEN }),
        account_monitor: sourceConfig(hungHttp.url, { timeout: '10ms', breaker: NEVER_OPEN }),
      },
    }).catch(async (error) => {
      hungGrpc.close();
      await hungHttp.close();
      throw error;
    });
    try {
      const errors = new Map<string, number>();
      for (const name of ['order_execution', 'account_monitor'] as const) {
        for (let i = 0; i < POLLS[name]; i++) {
          await freshPoll(app.app, name);
          const error = `${name}: ${String(stateStatus(app.app, name)?.last_error).replace(/[\d.]+s\b.*/, 'N s…')}`;
          errors.set(error, (errors.get(error) ?? 0) + 1);
        }
      }
      const report = [...errors].map(([error, count]) => `${count}× ${error}`).join('; ');
      t.diagnostic(report);
      for (const name of ['order_execution', 'account_monitor'] as const) {
        const { counts } = source(app.app, name);
        assert.equal(counts.failure, 0, `${name}: no hang counted as a failure (${report})`);
        assert.ok(counts.timeout >= POLLS[name], `${name}: every poll a timeout (${report})`);
      }
    } finally {
      await app.close();
      hungGrpc.close();
      await hungHttp.close();
    }
  });
});

describe('a backend that is gone (connection refused)', () => {
  /**
   * The backend stops: the first poll may still meet the pooled connection being torn down; from then on every
   * connection attempt is refused. Each failed poll keeps the data.
   */
  async function assertGone(
    name: 'account_monitor' | 'order_execution',
    restore: () => void,
    stop: () => void,
    refused: RegExp,
  ) {
    restore();
    await freshPoll(running.app, name);
    assert.equal(stateStatus(running.app, name)?.status, 'ok');
    const before = sections(SOURCE_TOPICS[name]);
    stop();
    const failures = source(running.app, name).counts.failure;
    await freshPoll(running.app, name);
    await freshPoll(running.app, name);
    assert.equal(source(running.app, name).counts.failure, failures + 2);
    const status = stateStatus(running.app, name)!;
    assert.equal(status.status, 'degraded');
    assert.match(String(status.last_error), refused);
    assert.equal(typeof status.stale_since, 'string');
    assert.deepEqual(sections(SOURCE_TOPICS[name]), before, 'the last known data is unchanged');
  }

  test('account_monitor: the HTTP backend stops listening', async () => {
    await assertGone(
      'account_monitor',
      () => {
        account.routes['/api/account'] = GOOD_ACCOUNT;
      },
      () => void account.close(),
      /ECONNREFUSED/,
    );
  });

  test('order_execution: the gRPC server is shut down', async () => {
    await assertGone(
      'order_execution',
      () => {
        grpcBackend.handlers.GetOrders = () => ({ orders: [grpcOrder({ order_id: 'o-1' })] });
      },
      () => grpcBackend.close(),
      /GetOrders: .*(No connection established|ECONNREFUSED)/i,
    );
  });
});
