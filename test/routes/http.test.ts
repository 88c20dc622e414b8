import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, openSocket, viewWhere } from '../helpers/client.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';

describe('HTTP routes with Redis up', () => {
  let redis: TestRedis;
  let running: RunningApp;

  before(async () => {
    redis = await TestRedis.start();
    running = await startApp(redis.url, { websocket: { ping_interval: '50ms', read_timeout: '200ms' } });
    await waitReady(running.app);
  });
  after(async () => {
    await running.close();
    await redis.kill();
  });

  test('GET /health', async () => {
    const response = await fetch(`${running.url}/health`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ok', service: 'dashboard-server' });
  });

  test('GET /ready is 200 once subscribed and loaded', async () => {
    const response = await fetch(`${running.url}/ready`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ready' });
  });

  test('GET /debug counts clients and never carries the state', async () => {
    const publisher = redis.client();
    const client = await connectClient(running.url, { type: 'tui' });
    await client.subscribe(['account']);
    await publisher.publish('account:main', JSON.stringify({ total_balance: 123456.78 }));
    await viewWhere(client, (d) => d.account !== undefined);
    const response = await fetch(`${running.url}/debug`);
    const debug = (await response.json()) as Record<string, unknown>;
    assert.equal(debug.clients, 1);
    assert.deepEqual(debug.clients_by_type, { tui: 1, web: 0 });
    assert.equal(debug.epoch, running.app.state.epoch);
    assert.equal(debug.sequence, running.app.state.sequence);
    assert.equal((debug.state_size as JsonObject).account, 1);
    assert.equal((debug.redis as JsonObject).status, 'up');
    assert.equal(typeof debug.uptime, 'number');
    assert.equal(typeof debug.last_update, 'string');
    assert.ok(!JSON.stringify(debug).includes('123456.78'), '/debug must not carry state values');
    client.close();
    publisher.disconnect();
  });

  test('GET /api/v1/state filters by topics and rejects unknown ones', async () => {
    const ok = await fetch(`${running.url}/api/v1/state?topics=system,market_data:btcusdt`);
    assert.equal(ok.status, 200);
    const body = (await ok.json()) as { data: JsonObject; epoch: string; sequence: number };
    assert.deepEqual(Object.keys(body.data).sort(), ['market_data', 'system']);
    assert.equal(body.epoch, running.app.state.epoch);
    const bad = await fetch(`${running.url}/api/v1/state?topics=bogus`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as JsonObject).error, 'unknown_topic');
  });

  test('GET /metrics exposes the hub metrics', async () => {
    const client = await connectClient(running.url, { type: 'web', format: 'msgpack' });
    await client.subscribe(['system']);
    const text = await (await fetch(`${running.url}/metrics`)).text();
    for (const name of [
      'dashboard_websocket_clients_total{client_type="web",protocol="hub"} 1',
      'dashboard_broadcasts_total',
      'dashboard_sent_bytes_total{client_type="web",format="msgpack"}',
      'dashboard_ingest_messages_total',
      'dashboard_ingest_invalid_total',
      'dashboard_broadcast_duration_seconds_bucket',
      'dashboard_redis_connected 1',
    ]) {
      assert.ok(text.includes(name), `missing ${name}`);
    }
    client.close();
  });

  test('a client that answers no ping within read_timeout is terminated', async () => {
    // autoPong off: this socket never answers the server's pings.
    const silent = await openSocket(running.url, { query: 'type=tui', clientOptions: { autoPong: false } });
    const healthy = await openSocket(running.url, { query: 'type=tui' });
    const { code } = await silent.closed;
    assert.equal(code, 1006);
    assert.equal(healthy.ws.readyState, WebSocket.OPEN);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    assert.match(metrics, /dashboard_disconnects_total\{code="terminated"\} [1-9]/);
    healthy.ws.close();
  });
});

describe('without Redis', () => {
  test('the hub serves, /ready says why it is not ready, and it recovers when Redis comes', async () => {
    const port = await freePort();
    const running = await startApp(`redis://127.0.0.1:${port}`);
    try {
      const health = await fetch(`${running.url}/health`);
      assert.equal(health.status, 200);
      const ready = await fetch(`${running.url}/ready`);
      assert.equal(ready.status, 503);
      const body = (await ready.json()) as { status: string; reason: string };
      assert.equal(body.status, 'not_ready');
      assert.match(body.reason, /redis/);
      const client = await connectClient(running.url);
      const snapshot = await client.subscribe(['system']);
      assert.notEqual(((snapshot.data.system as JsonObject).redis as JsonObject).status, 'up');
      // Redis appears on the configured port: the hub connects, subscribes and reports it to clients.
      const redis = await TestRedis.startOn(port);
      await waitReady(running.app, 15_000);
      await viewWhere(client, (d) => ((d.system as JsonObject).redis as JsonObject).status === 'up', 15_000);
      assert.equal((await fetch(`${running.url}/ready`)).status, 200);
      client.close();
      await redis.kill();
    } finally {
      await running.close();
    }
  });
});
