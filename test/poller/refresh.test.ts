import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { GrpcBackend, grpcOrder } from '../helpers/backends-grpc.ts';
import { accountBody, HttpBackend, hangHttp, json, strategyRoutes } from '../helpers/backends-http.ts';
import {
  freshPoll,
  section,
  source,
  sourceConfig,
  stateStatus,
  viewStatus,
} from '../helpers/backends-poller.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * Polls outside the schedule (docs/configuration.md, Backend services): the first poll within a second of
 * start, and a poll of every source after a Redis reconnect and after a breaker closes again. The sources'
 * interval is an hour, so any poll seen here was triggered, not scheduled.
 */

let redis: TestRedis;
let admin: Redis;
let grpcBackend: GrpcBackend;
let account: HttpBackend;
let strategy: HttpBackend;
let running: RunningApp;
let firstPolls: Promise<unknown>;

before(async () => {
  redis = await TestRedis.start();
  admin = redis.client();
  grpcBackend = await GrpcBackend.start({
    GetOrders: () => ({ orders: [grpcOrder({ order_id: 'first' })] }),
  });
  account = await HttpBackend.start({ '/api/account': json(accountBody()) });
  strategy = await HttpBackend.start(strategyRoutes());
  // From before the app is built: its start, Redis, the lease (a lone hub leads) and a jitter of up to 1 s. 3 s was
  // passed in a loaded fresh-clone run.
  firstPolls = Promise.all([
    grpcBackend.nextCall('GetOrders', 6000),
    account.nextRequest('/api/account', 6000),
    strategy.nextRequest('/status', 6000),
  ]);
  running = await startApp(redis.url, {
    backend_services: {
      order_execution: sourceConfig(grpcBackend.address),
      account_monitor: sourceConfig(account.url, { timeout: '150ms', breaker: { reset_timeout: '200ms' } }),
      strategy_engine: sourceConfig(strategy.url),
    },
  });
  await waitReady(running.app);
});

after(async () => {
  try {
    admin?.disconnect();
    await running?.close();
    grpcBackend?.close();
    await account?.close();
    await strategy?.close();
  } finally {
    await redis?.kill();
  }
});

describe('polls outside the schedule', () => {
  test('every source is polled once soon after start, without waiting for its interval', async () => {
    await firstPolls;
    // The poll's answer reaches clients a moment after its request reached the backend.
    const client = await connectClient(running.url, { type: 'tui' });
    try {
      await client.subscribe(['orders']);
      const data = await viewWhere(client, (d) => section(d, 'orders').first !== undefined);
      assert.equal((section(data, 'orders').first as JsonObject).order_id, 'first');
    } finally {
      client.close();
    }
  });

  test('a Redis reconnect triggers a poll of every source', async () => {
    await firstPolls;
    // Data the hub can only learn by polling again.
    grpcBackend.handlers.GetOrders = () => ({ orders: [grpcOrder({ order_id: 'after-reconnect' })] });
    const polled = Promise.all([
      grpcBackend.nextCall('GetOrders'),
      account.nextRequest('/api/account'),
      strategy.nextRequest('/status'),
    ]);
    const reconnects = running.app.redisIngest.info.reconnects;
    const killed = await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    // The ingest subscriber and the leader's relay subscriber (plugins/leader.ts).
    assert.equal(killed, 2, 'the hub subscriber connections were cut');
    await polled;
    assert.equal(running.app.redisIngest.info.reconnects, reconnects + 1);
    // The triggered poll's result reaches clients (the test itself polls nothing).
    const client = await connectClient(running.url, { type: 'tui' });
    try {
      await client.subscribe(['orders']);
      const data = await viewWhere(client, (d) => section(d, 'orders')['after-reconnect'] !== undefined);
      assert.equal(section(data, 'orders').first, undefined, 'the order list was replaced');
    } finally {
      client.close();
    }
  });

  test('a breaker closing again triggers a poll of every source', async () => {
    // account_monitor hangs until its breaker opens.
    account.routes['/api/account'] = hangHttp;
    const accountSource = source(running.app, 'account_monitor');
    for (let i = 0; i < 5 && !accountSource.breaker.opened; i++)
      await freshPoll(running.app, 'account_monitor');
    assert.equal(stateStatus(running.app, 'account_monitor')?.breaker, 'open');

    // It answers again: the probe closes the breaker, and then every source is polled.
    account.routes['/api/account'] = json(accountBody());
    const closed = once(accountSource.breaker, 'close');
    const othersPolled = Promise.all([grpcBackend.nextCall('GetOrders'), strategy.nextRequest('/status')]);
    await closed;
    await othersPolled;
    const client = await connectClient(running.url, { type: 'tui' });
    try {
      await client.subscribe(['system']);
      await viewWhere(client, (d) => viewStatus(d, 'account_monitor')?.status === 'ok');
      assert.equal(viewStatus(client.view.data, 'account_monitor')?.breaker, 'closed');
    } finally {
      client.close();
    }
  });
});
