import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Redis } from 'ioredis';
import type { SourceName } from '../../src/backends.ts';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { emergencyStopResponse, GrpcBackend, GrpcFailure, grpcOrder } from '../helpers/backends-grpc.ts';
import { HttpBackend, hangHttp, strategyRoutes } from '../helpers/backends-http.ts';
import { freshPoll, source, sourceConfig, stateStatus } from '../helpers/backends-poller.ts';
import { TestRedis } from '../helpers/redis.ts';

/** Every backend the config can name (backend_services), as the test expects /debug and the metrics to list them. */
const SOURCE_NAMES: readonly SourceName[] = [
  'order_execution',
  'risk_manager',
  'account_monitor',
  'strategy_engine',
  'market_data',
];

/**
 * What operators see of the poller: `sources` in /debug (status, breaker, counts per outcome) and the three
 * backend metrics in /metrics, for all five sources in every state a source can be in.
 */

let redis: TestRedis;
let publisher: Redis;
let grpcBackend: GrpcBackend;
let account: HttpBackend;
let strategy: HttpBackend;
let running: RunningApp;

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  grpcBackend = await GrpcBackend.start({
    GetOrders: () => ({ orders: [grpcOrder()] }),
    GetRiskMetrics: () => {
      throw new GrpcFailure(grpc.status.UNAVAILABLE, 'metrics not ready');
    },
    GetEmergencyStopStatus: () => emergencyStopResponse(),
  });
  account = await HttpBackend.start({ '/api/account': hangHttp });
  strategy = await HttpBackend.start(strategyRoutes());
  running = await startApp(redis.url, {
    backend_services: {
      order_execution: sourceConfig(grpcBackend.address),
      risk_manager: sourceConfig(grpcBackend.address, { breaker: { volume_threshold: 100 } }),
      // Open for as long as this file runs once it opens.
      account_monitor: sourceConfig(account.url, { timeout: '150ms', breaker: { reset_timeout: '1h' } }),
      strategy_engine: sourceConfig(strategy.url),
      market_data: sourceConfig(undefined),
    },
  });
  await waitReady(running.app);

  // Drive every source into a known state: ok, degraded, down with its breaker open.
  await freshPoll(running.app, 'order_execution');
  await freshPoll(running.app, 'order_execution');
  await freshPoll(running.app, 'risk_manager');
  for (let i = 0; i < 5 && !source(running.app, 'account_monitor').breaker.opened; i++) {
    await freshPoll(running.app, 'account_monitor');
  }
  await freshPoll(running.app, 'account_monitor'); // rejected
  await freshPoll(running.app, 'account_monitor'); // rejected
  await freshPoll(running.app, 'strategy_engine');
  await publisher.set('market_data:XRPUSDT', JSON.stringify({ symbol: 'XRPUSDT', last_price: '0.61' }));
  await freshPoll(running.app, 'market_data');
});

after(async () => {
  try {
    publisher?.disconnect();
    await running?.close();
    grpcBackend?.close();
    await account?.close();
    await strategy?.close();
  } finally {
    await redis?.kill();
  }
});

async function get(path: string): Promise<Response> {
  const response = await fetch(`${running.url}${path}`);
  assert.equal(response.status, 200, `${path} answers 200`);
  return response;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a well-formed sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value;
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function sample(samples: Sample[], name: string, labels: Record<string, string>): number | undefined {
  return samples.find(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([key, value]) => s.labels[key] === value),
  )?.value;
}

describe('the poller in /debug and /metrics', () => {
  test('market_data is polled by reloading the market_data:* keys from Redis', () => {
    assert.equal(stateStatus(running.app, 'market_data')?.status, 'ok');
    assert.equal(
      (running.app.state.get('market_data', 'XRPUSDT') as JsonObject | undefined)?.last_price,
      0.61,
    );
  });

  test('/debug lists every configured source with its status, breaker and counts per outcome', async () => {
    const debug = (await (await get('/debug')).json()) as { sources: Record<string, JsonObject> };
    assert.deepEqual(Object.keys(debug.sources).sort(), [...SOURCE_NAMES].sort());
    for (const name of SOURCE_NAMES) {
      const entry = debug.sources[name];
      const polled = source(running.app, name);
      assert.deepEqual(entry.polls, { ...polled.counts }, `${name}: counts per outcome`);
      assert.equal(entry.status, polled.status.status);
      assert.equal(entry.breaker, polled.status.breaker);
      assert.equal(typeof entry.breaker_stats, 'object', `${name}: the breaker's own stats`);
    }
    const { order_execution: orders, risk_manager: risk, account_monitor: accounts } = debug.sources;
    assert.equal(orders.status, 'ok');
    assert.equal(orders.breaker, 'closed');
    // (Two polls of the test's own, and maybe the jittered start poll.)
    assert.ok(((orders.polls as JsonObject).success as number) >= 2);
    assert.equal(orders.last_error, null);
    assert.equal(risk.status, 'degraded');
    assert.ok(((risk.polls as JsonObject).failure as number) >= 1);
    assert.match(String(risk.last_error), /GetRiskMetrics: metrics not ready/);
    assert.equal(typeof risk.stale_since, 'string');
    assert.equal(accounts.status, 'down');
    assert.equal(accounts.breaker, 'open');
    assert.ok(((accounts.polls as JsonObject).timeout as number) >= 2);
    assert.equal((accounts.polls as JsonObject).rejected, 2);
    assert.match(String(accounts.last_error), /timed out after 150ms/);
    assert.equal(debug.sources.strategy_engine.status, 'ok');
    assert.equal(debug.sources.market_data.status, 'ok');
  });

  test('/metrics has requests by source and outcome, durations by source, and the breaker state', async () => {
    const samples = parseMetrics(await (await get('/metrics')).text());
    for (const name of SOURCE_NAMES) {
      const { counts } = source(running.app, name);
      for (const outcome of ['success', 'failure', 'timeout', 'rejected'] as const) {
        const value = sample(samples, 'dashboard_backend_requests_total', { source: name, outcome });
        assert.equal(value ?? 0, counts[outcome], `dashboard_backend_requests_total{${name},${outcome}}`);
      }
      // Every poll that sent a request is timed; a rejected one sent nothing and is not.
      const timed = counts.success + counts.failure + counts.timeout;
      assert.equal(
        sample(samples, 'dashboard_backend_request_duration_seconds_count', { source: name }),
        timed,
        `dashboard_backend_request_duration_seconds_count{${name}}`,
      );
      assert.equal(
        sample(samples, 'dashboard_backend_request_duration_seconds_bucket', { source: name, le: '+Inf' }),
        timed,
      );
      assert.ok(
        (sample(samples, 'dashboard_backend_request_duration_seconds_sum', { source: name }) ?? -1) >= 0,
      );
    }
    assert.ok(
      (sample(samples, 'dashboard_backend_requests_total', {
        source: 'order_execution',
        outcome: 'success',
      }) ?? 0) >= 2,
    );
    assert.ok(
      (sample(samples, 'dashboard_backend_requests_total', {
        source: 'account_monitor',
        outcome: 'rejected',
      }) ?? 0) >= 2,
    );
    // The hung polls took about their timeout (150 ms): at least in the 0.25 s bucket, none in 0.1 s.
    const accountTimed = source(running.app, 'account_monitor').counts.timeout;
    assert.equal(
      sample(samples, 'dashboard_backend_request_duration_seconds_bucket', {
        source: 'account_monitor',
        le: '0.1',
      }),
      0,
    );
    assert.equal(
      sample(samples, 'dashboard_backend_request_duration_seconds_bucket', {
        source: 'account_monitor',
        le: '0.5',
      }),
      accountTimed,
    );

    const breakerState: Record<SourceName, number> = {
      order_execution: 0,
      risk_manager: 0,
      account_monitor: 2,
      strategy_engine: 0,
      market_data: 0,
    };
    for (const name of SOURCE_NAMES) {
      assert.equal(
        sample(samples, 'dashboard_backend_breaker_state', { source: name }),
        breakerState[name],
        `dashboard_backend_breaker_state{${name}}`,
      );
    }
  });

  test('/metrics counts polled records as ingest messages of source poll, Redis ones of source redis', async () => {
    const samples = parseMetrics(await (await get('/metrics')).text());
    const { messages } = running.app.ingest.counters;
    // One order per poll of order_execution (at least two), the strategies of each strategy_engine poll.
    assert.ok((messages.poll.orders ?? 0) >= 2, JSON.stringify(messages));
    assert.ok((messages.poll.strategies ?? 0) >= 1, JSON.stringify(messages));
    // market_data is polled by reading its Redis keys: those are Redis payloads.
    assert.ok((messages.redis.market_data ?? 0) >= 1, JSON.stringify(messages));
    for (const [source, byTopic] of Object.entries(messages)) {
      for (const [topic, count] of Object.entries(byTopic)) {
        assert.equal(sample(samples, 'dashboard_ingest_messages_total', { source, topic }), count);
      }
    }
  });
});
