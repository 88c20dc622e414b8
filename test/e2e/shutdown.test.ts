import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { startServerProcess } from '../helpers/security-process.ts';
import { tryUpgrade } from '../helpers/security-sockets.ts';

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
  const { hostname, port } = new URL(baseUrl);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  socket.write(
    `GET /ws?type=tui HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const [head] = (await once(socket, 'data')) as [Buffer];
  assert.match(head.toString(), /^HTTP\/1\.1 101/);
  socket.pause();
  socket.on('error', () => {});
  const frame = (message: object) => {
    const payload = Buffer.from(JSON.stringify(message));
    assert.ok(payload.length < 126);
    const mask = randomBytes(4);
    return Buffer.concat([
      Buffer.from([0x81, 0x80 | payload.length]),
      mask,
      Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4])),
    ]);
  };
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
    assert.equal(code, 0);
    assert.ok(elapsed < 3000, `exited after ${elapsed} ms, past server.shutdown_timeout`);
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
    assert.deepEqual(await ready.json(), { status: 'not_ready', reason: 'shutting down' });
    const health = await fetch(`${running.url}/health`);
    assert.equal(health.status, 200);
    await health.arrayBuffer();

    await closing;
    stuck.terminate();
  });
});
