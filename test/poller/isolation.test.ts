import assert from 'node:assert/strict';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import {
  emergencyStopResponse,
  GrpcBackend,
  hangGrpc,
  riskMetricsResponse,
} from '../helpers/backends-grpc.ts';
import { HttpBackend, hangHttp, strategyRoutes } from '../helpers/backends-http.ts';
import { source, sourceConfig, stateStatus } from '../helpers/backends-poller.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * Sources are independent: while two backends hang (one HTTP, one gRPC), the healthy ones keep being polled on
 * their own schedule, and the event loop stays responsive. The dead sources' breakers are set never to open,
 * so they keep waiting out their full timeout on every poll: the worst case for the others.
 */

const HEALTHY_INTERVAL_MS = 100;
const DEAD_TIMEOUT_MS = 200;
const DEAD_POLLS = 4;

let redis: TestRedis;
let grpcBackend: GrpcBackend;
let deadHttp: HttpBackend;
let healthyHttp: HttpBackend;
let running: RunningApp;

before(async () => {
  redis = await TestRedis.start();
  grpcBackend = await GrpcBackend.start({
    GetOrders: hangGrpc,
    GetRiskMetrics: () => riskMetricsResponse(),
    GetEmergencyStopStatus: () => emergencyStopResponse(),
  });
  deadHttp = await HttpBackend.start({ '/api/account': hangHttp });
  healthyHttp = await HttpBackend.start(strategyRoutes('live', { momentum: { pnl: 0 } }));
  // (A timeout must be shorter than its interval.)
  const dead = { interval: '250ms', timeout: `${DEAD_TIMEOUT_MS}ms`, breaker: { volume_threshold: 1000 } };
  // The healthy ones' breakers never open either: a slow first call on a loaded machine must not stop them.
  const healthy = {
    interval: `${HEALTHY_INTERVAL_MS}ms`,
    timeout: '90ms',
    breaker: { volume_threshold: 1000 },
  };
  running = await startApp(redis.url, {
    backend_services: {
      order_execution: sourceConfig(grpcBackend.address, dead),
      account_monitor: sourceConfig(deadHttp.url, dead),
      risk_manager: sourceConfig(grpcBackend.address, healthy),
      strategy_engine: sourceConfig(healthyHttp.url, healthy),
    },
  });
  await waitReady(running.app);
});

after(async () => {
  try {
    await running?.close();
    grpcBackend?.close();
    await deadHttp?.close();
    await healthyHttp?.close();
  } finally {
    await redis?.kill();
  }
});

/**
 * Once every source is on its schedule (the first polls are jittered), waits for the dead HTTP backend's next
 * request, then for `DEAD_POLLS` more: that many timeouts in between. `during` runs at the window's start.
 */
async function deadPeriod<T>(during: () => T): Promise<{ elapsed: number; result: T }> {
  await Promise.all([
    healthyHttp.nextRequest('/status'),
    grpcBackend.nextCall('GetRiskMetrics'),
    grpcBackend.nextCall('GetOrders'),
  ]);
  await deadHttp.nextRequest('/api/account');
  const started = performance.now();
  const timeoutsBefore = source(running.app, 'account_monitor').counts.timeout;
  const context = during();
  for (let i = 0; i < DEAD_POLLS; i++) await deadHttp.nextRequest('/api/account', 5000);
  const elapsed = performance.now() - started;
  assert.ok(
    source(running.app, 'account_monitor').counts.timeout >= timeoutsBefore + DEAD_POLLS - 1,
    'the dead HTTP source timed out poll after poll',
  );
  return { elapsed, result: context };
}

describe('a hanging backend does not hold up the others', () => {
  test('healthy sources keep their schedule while two others time out again and again', async (t) => {
    const { elapsed, result } = await deadPeriod(() => ({
      strategy: healthyHttp.hits('/status'),
      risk: grpcBackend.hits('GetRiskMetrics'),
      orders: grpcBackend.hits('GetOrders'),
    }));
    const strategyPolls = healthyHttp.hits('/status') - result.strategy;
    const riskPolls = grpcBackend.hits('GetRiskMetrics') - result.risk;
    const orderPolls = grpcBackend.hits('GetOrders') - result.orders;
    // A source polls `interval` after its previous poll ended, so a cycle is the interval plus the poll itself
    // (a few ms here): allow 20 ms per cycle and two cycles at the edges. Had the healthy sources waited for
    // the dead ones, they would have been polled about as often as those (DEAD_POLLS times).
    const expected = Math.floor(elapsed / (HEALTHY_INTERVAL_MS + 20)) - 2;
    const report = `in ${Math.round(elapsed)} ms: strategy_engine ${strategyPolls}, risk_manager ${riskPolls}, dead order_execution ${orderPolls} polls`;
    t.diagnostic(report);
    assert.ok(expected > DEAD_POLLS * 2, `the window is long enough to tell (${report})`);
    assert.ok(strategyPolls >= expected, `strategy_engine polled at least ${expected} times (${report})`);
    assert.ok(riskPolls >= expected, `risk_manager polled at least ${expected} times (${report})`);
    assert.ok(orderPolls <= DEAD_POLLS + 2, `the dead gRPC source waited out its timeouts (${report})`);

    for (const name of ['strategy_engine', 'risk_manager'] as const) {
      assert.equal(stateStatus(running.app, name)?.status, 'ok', `${name} stays ok`);
    }
    const accountStatus = stateStatus(running.app, 'account_monitor');
    assert.equal(accountStatus?.status, 'degraded');
    assert.equal(accountStatus?.last_error, `timed out after ${DEAD_TIMEOUT_MS}ms`);
    const orderStatus = stateStatus(running.app, 'order_execution');
    assert.equal(orderStatus?.status, 'degraded');
    // (Now and then a gRPC hang reads "Deadline exceeded": asserted on its own in failures.test.ts.)
    assert.match(
      String(orderStatus?.last_error),
      new RegExp(`timed out after ${DEAD_TIMEOUT_MS}ms|Deadline exceeded`),
    );
  });

  test('data of a healthy source still reaches clients while another backend hangs', async () => {
    const client = await connectClient(running.url, { type: 'tui' });
    try {
      await client.subscribe(['strategies', 'system']);
      healthyHttp.routes = strategyRoutes('observation', { momentum: { pnl: 42 }, breakout: { pnl: 1 } });
      const data = await viewWhere(
        client,
        (d) =>
          ((d.strategies as JsonObject | undefined)?.breakout as JsonObject | undefined)?.mode ===
          'observation',
        2000,
      );
      assert.equal(((data.strategies as JsonObject).momentum as JsonObject).pnl, 42);
      const sources = (data.system as JsonObject).sources as JsonObject;
      assert.equal((sources.account_monitor as JsonObject).status, 'degraded');
    } finally {
      client.close();
    }
  });

  test('the event loop stays responsive while backends hang (behaviour check, not a benchmark)', async (t) => {
    const histogram = monitorEventLoopDelay({ resolution: 10 });
    const { elapsed } = await deadPeriod(() => histogram.enable());
    histogram.disable();
    const p99 = histogram.percentile(99) / 1e6;
    const max = histogram.max / 1e6;
    const report = `event loop delay p99 ${p99.toFixed(1)} ms (max ${max.toFixed(1)} ms) over ${Math.round(elapsed)} ms of hanging polls`;
    t.diagnostic(report);
    assert.ok(histogram.count > 0, 'the delay was sampled');
    assert.ok(p99 < 100, report);
  });
});
