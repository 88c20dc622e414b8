import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';
import { maskedFrame, upgradedSocket } from '../helpers/security-sockets.ts';

/**
 * WebSocket ping frames never reach the hub's message rate limit: `ws` answers them itself and terminates a socket
 * with more than 60 pongs not yet written (maxPendingAutoPongs), with no close frame and no error event. The hub
 * counts and logs those terminations like the other frames ws refuses, and keeps serving everyone else.
 */

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;
const log = logCollector();

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  running = await startApp(
    redis.url,
    {
      server: { log_level: 'warn' },
      websocket: { connect_rate_limit: { max: 1000, window: '1m' } },
      broadcast: { tui_interval: '20ms' },
    },
    { logStream: log.stream },
  );
  await waitReady(running.app);
});
after(async () => {
  publisher.disconnect();
  await running.close();
  await redis.kill();
});

/** `count` masked ping frames with a 125-byte payload (the most a control frame may carry), in one buffer. */
function pings(count: number): Buffer {
  return Buffer.concat(Array.from({ length: count }, () => maskedFrame(0x9, randomBytes(125))));
}

test('a ping flood ends that socket only; it is counted, logged once per second, and the others are served', async () => {
  const bystander = await connectClient(running.url, { type: 'tui' });
  await bystander.subscribe(['market_data:BTCUSDT']);
  const clientsBefore = running.app.hub.clients.size;

  // A peer that reads (its pongs are flushed) and one that never does: both go past ws's pending-pong limit.
  for (const read of [true, false]) {
    const socket = await upgradedSocket(running.url, { read });
    // The peer sees a reset (ECONNRESET), which `once` would turn into a rejection: wait for 'close' itself.
    const closed = new Promise((resolve) => socket.once('close', resolve));
    for (let i = 0; i < 20 && !socket.destroyed; i++) socket.write(pings(1000));
    await closed;
  }

  assert.equal(running.app.hub.stats.socketErrors.ping_flood, 2);
  assert.equal(running.app.hub.clients.size, clientsBefore, 'the flooding sockets are gone from the hub');
  const lines = log.lines().filter((line) => line.msg === 'websocket error; connection closed');
  // One line per second at most: the second flood is logged only if it came a second or more after the first.
  assert.ok(lines.length >= 1 && lines.length <= 2, `${lines.length} log lines`);
  for (const line of lines) assert.equal(line.code, 'ping_flood');
  if (lines.length === 2) assert.ok((lines[1].time as number) - (lines[0].time as number) >= 1000);
  const metrics = await running.app.inject({ method: 'GET', url: '/metrics' });
  assert.match(metrics.body, /dashboard_websocket_errors_total\{code="ping_flood"\} 2/);

  await publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: 64_000 }));
  await viewWhere(
    bystander,
    (data) => ((data.market_data as JsonObject).BTCUSDT as JsonObject | undefined)?.last_price === 64_000,
  );
  bystander.close();
});

test('a few pings at a time are answered and cost nothing', async () => {
  const socket = await upgradedSocket(running.url);
  const pongs: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => pongs.push(chunk));
  const errorsBefore = running.app.hub.stats.socketErrors.ping_flood ?? 0;
  socket.write(pings(10));
  // Ten pong frames of 2 + 125 bytes.
  while (Buffer.concat(pongs).length < 10 * 127) await once(socket, 'data');
  assert.equal(Buffer.concat(pongs)[0], 0x8a, 'a pong frame');
  assert.equal(running.app.hub.stats.socketErrors.ping_flood ?? 0, errorsBefore);
  assert.equal(socket.destroyed, false);
  socket.destroy();
});
