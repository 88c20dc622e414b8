import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import { type RunningApp, startStack, stopStack } from '../helpers/app.ts';
import type { TestRedis } from '../helpers/redis.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;

before(async () => {
  ({ redis, publisher, running } = await startStack({
    broadcast: { tui_interval: '10ms', web_interval: '20ms' },
    websocket: { connect_rate_limit: { max: 100_000, window: '1m' } },
  }));
});
after(() => stopStack({ redis, publisher, running }));

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** One client's life: connect, subscribe, receive its snapshot, then leave politely or abruptly. */
async function cycle(url: string, index: number): Promise<void> {
  const type = index % 2 ? 'tui' : 'web';
  const socket = new WebSocket(
    `${url.replace('http', 'ws')}/ws?type=${type}&format=${index % 3 ? 'json' : 'msgpack'}`,
  );
  await once(socket, 'open');
  const snapshot = new Promise((resolve) => socket.on('message', resolve));
  socket.send(
    JSON.stringify({
      action: 'subscribe',
      subscriptions: [index % 4 ? 'market_data' : 'market_data:CHURN', 'system'],
    }),
  );
  await snapshot;
  const closed = once(socket, 'close');
  // Some leave mid-stream without a close handshake, as a crashed client or a dropped network would.
  if (index % 5 === 0) socket.terminate();
  else socket.close();
  await closed;
}

test('thousands of connect/subscribe/disconnect cycles leave no clients, groups, timers or memory behind', async () => {
  const resourcesBefore = process.getActiveResourcesInfo().length;
  // Warm up, so lazily created objects (JIT, pools) are not counted as growth.
  for (let i = 0; i < 200; i++) await cycle(running.url, i);
  const baseline = heapAfterGc();
  const updates = setInterval(
    () => void publisher.publish('market_data:CHURN', JSON.stringify({ last_price: Math.random() })),
    5,
  );
  try {
    for (let batch = 0; batch < 30; batch++) {
      await Promise.all(Array.from({ length: 100 }, (_, i) => cycle(running.url, batch * 100 + i)));
    }
  } finally {
    clearInterval(updates);
  }
  const { hub } = running.app;
  // Closes complete on the server a moment after the client sees them: wait for the hub to empty.
  while (hub.clients.size > 0) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(hub.groupCount, 0);
  assert.equal(hub.users, 0);
  assert.equal(running.app.websocketServer.clients.size, 0);
  const grown = heapAfterGc() - baseline;
  // 3,000 clients at ~5 KB of heap each would be 15 MB; what stays must be far below one client in ten.
  assert.ok(grown < 3 * 1024 * 1024, `heap grew by ${(grown / 1024).toFixed(0)} KiB after 3,000 cycles`);
  assert.ok(
    process.getActiveResourcesInfo().length <= resourcesBefore + 2,
    `active resources ${resourcesBefore} → ${process.getActiveResourcesInfo().length}`,
  );
});
