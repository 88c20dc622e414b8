import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, tryUpgrade, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { startServerProcess } from '../helpers/security-process.ts';
import { maskedFrame, upgradedSocket } from '../helpers/security-sockets.ts';

/**
 * Shutdown with a client that never reads and never answers the close handshake: server.shutdown_timeout is the
 * one limit (the client is terminated at the drain deadline, the process exits 0 within it), and an upgrade
 * attempted during the drain gets the documented `shutting_down` refusal.
 */

const SYMBOLS = 300;

/**
 * A raw TCP client that completes the upgrade, subscribes to `market_data` and asks for resyncs, then never reads
 * again: the hub's snapshots fill the kernel buffers and then its own socket buffer, and it never sends a close
 * frame back.
 */
async function stalledSocket(baseUrl: string): Promise<Socket> {
  const socket = await upgradedSocket(baseUrl, { read: false });
  const frame = (message: object) => maskedFrame(0x1, Buffer.from(JSON.stringify(message)));
  socket.write(frame({ action: 'subscribe', subscriptions: ['market_data'] }));
  for (let i = 0; i < 10; i++) socket.write(frame({ action: 'resync' }));
  return socket;
}

/** Publishes SYMBOLS market data records of ~10 KB each and waits until `client` holds them all. */
async function fillState(publisher: Redis, client: DashboardClient): Promise<void> {
  const pad = 'x'.repeat(10_000);
  for (let i = 0; i < SYMBOLS; i++) {
    await publisher.publish(`market_data:SYM${i}USDT`, JSON.stringify({ last_price: i, pad }));
  }
  await viewWhere(
    client,
    (data) => Object.keys((data.market_data as JsonObject | undefined) ?? {}).length === SYMBOLS,
    20_000,
  );
}

/** Resolves once /metrics shows a socket buffer past `bytes`: the stalled client's kernel buffers are full. */
async function bufferedPast(baseUrl: string, bytes: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const text = await (await fetch(`${baseUrl}/metrics`)).text();
    const value = Number(/^dashboard_websocket_max_buffered_bytes (\S+)/m.exec(text)?.[1]);
    if (value > bytes) return;
    assert.ok(Date.now() < deadline, `no socket buffer past ${bytes} bytes (${value})`);
    // Nothing in another process to wait on: look again after a broadcast interval or two.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('SIGTERM with a client that stopped reading', () => {
  let redis: TestRedis;
  let publisher: Redis;
  before(async () => {
    redis = await TestRedis.start();
    publisher = redis.client();
  });
  after(async () => {
    publisher.disconnect();
    await redis.kill();
  });

  /** Starts the service, fills the state, connects `clients` readers and one stalled socket, sends SIGTERM. */
  async function shutDown(shutdownTimeout: string, clients: number) {
    const service = await startServerProcess({
      server: { shutdown_timeout: shutdownTimeout },
      redis: { url: redis.url },
      auth: { enabled: false },
      websocket: { connect_rate_limit: { max: 1000, window: '1m' } },
    });
    const exited = once(service.child, 'exit') as Promise<[number | null, string | null]>;
    const readers = await Promise.all(
      Array.from({ length: clients }, () => connectClient(service.url, { type: 'tui' })),
    );
    await Promise.all(readers.map((reader) => reader.subscribe(['market_data:SYM0USDT'])));
    const watcher = await connectClient(service.url, { type: 'web' });
    await watcher.subscribe(['market_data']);
    await fillState(publisher, watcher);
    const stalled = await stalledSocket(service.url);
    await bufferedPast(service.url, 1024 * 1024);

    const closes = [watcher, ...readers].map((reader) =>
      reader.closed().then(({ code }) => ({ code, after: Date.now() - signalledAt })),
    );
    const signalledAt = Date.now();
    service.child.kill('SIGTERM');
    const [code, signal] = await exited;
    const elapsed = Date.now() - signalledAt;
    stalled.destroy();
    return { code, signal, elapsed, closes: await Promise.all(closes), output: service.output() };
  }

  test('the process exits 0 within shutdown_timeout even when it is longer than Fastify plugin timeout (10 s)', async () => {
    const { code, signal, elapsed, closes, output } = await shutDown('11s', 50);
    assert.equal(signal, null);
    assert.equal(code, 0, `exit code ${code}: ${output.slice(-2000)}`);
    assert.ok(elapsed < 11_000, `exited after ${elapsed} ms`);
    assert.doesNotMatch(output, /AVV_ERR_READY_TIMEOUT|FST_ERR_HOOK_TIMEOUT/);
    for (const close of closes) {
      assert.equal(close.code, 1001);
      assert.ok(close.after < 2000, `a reading client was closed only after ${close.after} ms`);
    }
  });

  test('with a short shutdown_timeout the stalled client is terminated in time and the exit is within it', async () => {
    const { code, elapsed, closes } = await shutDown('3s', 10);
    // Exit code 0 is the proof that the hub finished within shutdown_timeout by its own clock: its backstop exits 1
    // at shutdown_timeout. Seen from here, signal delivery and a loaded machine's scheduling add a little.
    assert.equal(code, 0);
    assert.ok(elapsed < 3000 + 500, `exited after ${elapsed} ms, past server.shutdown_timeout`);
    for (const close of closes) assert.equal(close.code, 1001);
  });
});

describe('an upgrade while draining', () => {
  let redis: TestRedis;
  let running: RunningApp;
  before(async () => {
    redis = await TestRedis.start();
    running = await startApp(redis.url, { server: { shutdown_timeout: '2s' } });
    await waitReady(running.app);
  });
  after(async () => {
    await redis.kill();
  });

  test('gets 503 {"error":"shutting_down"}; /ready says not ready, /health stays up', async () => {
    const reader = await connectClient(running.url, { type: 'tui' });
    await reader.subscribe(['system']);
    // A client that stops reading never answers the close frame: the drain waits for it until its deadline.
    const stuck = new WebSocket(`${running.url.replace('http', 'ws')}/ws?type=tui`);
    await once(stuck, 'open');
    (stuck as unknown as { _socket: Socket })._socket.pause();
    const readerClosed = reader.closed();
    const closing = running.app.close();
    assert.equal((await readerClosed).code, 1001);

    const refused = await tryUpgrade(running.url);
    assert.equal(refused.opened, false);
    if (refused.opened) return;
    assert.equal(refused.status, 503);
    assert.deepEqual(refused.body, { error: 'shutting_down', message: 'server is shutting down' });
    const ready = await fetch(`${running.url}/ready`);
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), {
      error: 'not_ready',
      message: 'shutting down',
      status: 'not_ready',
      reason: 'shutting down',
    });
    const health = await fetch(`${running.url}/health`);
    assert.equal(health.status, 200);
    await health.arrayBuffer();

    await closing;
    stuck.terminate();
  });
});
