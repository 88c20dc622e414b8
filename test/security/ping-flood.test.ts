import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { logCollector } from '../helpers/security-sockets.ts';

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

/** A hand-made upgrade; `read: false` leaves the socket paused, as a peer that never reads. */
async function upgraded(read: boolean): Promise<Socket> {
  const { hostname, port } = new URL(running.url);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  socket.write(
    `GET /ws?type=tui HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const [head] = (await once(socket, 'data')) as [Buffer];
  assert.match(head.toString(), /^HTTP\/1\.1 101/);
  if (!read) socket.pause();
  socket.on('error', () => {});
  return socket;
}

/** `count` masked ping frames with a 125-byte payload (the most a control frame may carry), in one buffer. */
function pings(count: number): Buffer {
  return Buffer.concat(
    Array.from({ length: count }, () => {
      const payload = randomBytes(125);
      const mask = randomBytes(4);
      return Buffer.concat([
        Buffer.from([0x89, 0x80 | 125]),
        mask,
        Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4])),
      ]);
    }),
  );
}

test('a ping flood ends that socket only; it is counted, logged once per second, and the others are served', async () => {
  const bystander = await connectClient(running.url, { type: 'tui' });
  await bystander.subscribe(['market_data:BTCUSDT']);
  const clientsBefore = running.app.hub.clients.size;

  // A peer that reads (its pongs are flushed) and one that never does: both go past ws's pending-pong limit.
  for (const read of [true, false]) {
    const socket = await upgraded(read);
    // The peer sees a reset (ECONNRESET), which `once` would turn into a rejection: wait for 'close' itself.
    const closed = new Promise((resolve) => socket.once('close', resolve));
    for (let i = 0; i < 20 && !socket.destroyed; i++) socket.write(pings(1000));
    await closed;
  }

  assert.equal(running.app.hub.stats.socketErrors.ping_flood, 2);
  assert.equal(running.app.hub.clients.size, clientsBefore, 'the flooding sockets are gone from the hub');
  const lines = log.lines().filter((line) => line.msg === 'websocket error; connection closed');
  assert.equal(lines.length, 1, 'one log line within the second');
  assert.equal(lines[0].code, 'ping_flood');
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
  const socket = await upgraded(true);
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
