import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { INGEST_TOPICS } from '../../src/topics.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let running: RunningApp;
let client: DashboardClient;
const log = logCollector();
/** How many log lines so far carry this message. */
const logged = (message: string) => log.lines().filter((line) => line.msg === message).length;
const LOST = 'redis: connection lost; serving last known state';
const CONNECTED = 'redis: connected';

const redisStatus = (d: JsonObject) => ((d.system as JsonObject).redis as JsonObject).status;
const price = (d: JsonObject, symbol: string) =>
  ((d.market_data as JsonObject)[symbol] as JsonObject | undefined)?.last_price;

before(async () => {
  redis = await TestRedis.start();
  running = await startApp(redis.url, { server: { log_level: 'info' } }, { logStream: log.stream });
  await waitReady(running.app);
  client = await connectClient(running.url, { type: 'tui' });
  await client.subscribe(['system', 'market_data']);
});
after(async () => {
  client.close();
  await running.close();
  await redis.kill();
});

describe('Redis connection loss', () => {
  test('a cut subscriber connection is re-established and the snapshot keys reloaded', async () => {
    const admin: Redis = redis.client();
    // Written to the key only, never published: the hub can learn it only by reloading after the reconnect.
    await admin.set('market_data:AVAXUSDT', JSON.stringify({ last_price: 35.5 }));
    const killed = await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    // The ingest subscriber and the leader's relay subscriber (plugins/leader.ts).
    assert.equal(killed, 2);
    await viewWhere(client, (d) => price(d, 'AVAXUSDT') === 35.5);
    assert.equal(running.app.redisIngest.info.reconnects, 1);
    // Subscribed again, exactly once: one publish is one message.
    const before = running.app.ingest.counters.messages.redis.market_data ?? 0;
    const receivers = await admin.publish('market_data:AVAXUSDT', JSON.stringify({ last_price: 36 }));
    assert.equal(receivers, 1);
    await viewWhere(client, (d) => price(d, 'AVAXUSDT') === 36);
    assert.equal(running.app.ingest.counters.messages.redis.market_data, before + 1);
    admin.disconnect();
  });

  test('Redis down: clients keep the last state and see system.redis down; it recovers when Redis returns', async () => {
    const downSeen = viewWhere(client, (d) => redisStatus(d) === 'down');
    await redis.kill();
    await downSeen;
    assert.equal(price(client.view.data, 'AVAXUSDT'), 36);
    const ready = await fetch(`${running.url}/ready`);
    assert.equal(ready.status, 503);
    // A client connecting during the outage still gets the last known state.
    const late = await connectClient(running.url);
    const snapshot = await late.subscribe(['market_data']);
    assert.equal(price(snapshot.data, 'AVAXUSDT'), 36);
    late.close();

    await redis.restart();
    await waitReady(running.app, 15_000);
    await viewWhere(client, (d) => redisStatus(d) === 'up', 15_000);
    const publisher = redis.client();
    await publisher.publish('market_data:AVAXUSDT', JSON.stringify({ last_price: 40 }));
    await viewWhere(client, (d) => price(d, 'AVAXUSDT') === 40);
    assert.equal((await fetch(`${running.url}/ready`)).status, 200);
    publisher.disconnect();
  });
});

describe('one outage, many failed reconnects', () => {
  test('the loss is logged once and the return once, however many reconnect attempts fail', async () => {
    const [lostBefore, connectedBefore] = [logged(LOST), logged(CONNECTED)];
    // ioredis writes to stderr through console.error when a connection has no error listener.
    const stderr: unknown[][] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => stderr.push(args);
    const down = viewWhere(client, (d) => redisStatus(d) === 'down');
    await redis.kill();
    await down;
    // In Redis's place, a port that hangs up on every connection: each reconnect attempt fails at once.
    let attempts = 0;
    const refuser = createServer((socket: Socket) => {
      attempts++;
      socket.destroy();
      if (attempts === 3) refuser.emit('thirdAttempt');
    });
    refuser.listen(redis.port, '127.0.0.1');
    await once(refuser, 'thirdAttempt');
    await new Promise<void>((resolve) => refuser.close(() => resolve()));
    await redis.restart();
    await waitReady(running.app, 15_000);
    await viewWhere(client, (d) => redisStatus(d) === 'up', 15_000);
    console.error = consoleError;
    assert.deepEqual(stderr, []);
    assert.equal(logged(LOST) - lostBefore, 1);
    assert.equal(logged(CONNECTED) - connectedBefore, 1);
  });
});

describe('repeated Redis outages', () => {
  test('five kill/restart cycles with clients connected: no duplicate subscriptions, no duplicate messages', async () => {
    const [lostBefore, connectedBefore] = [logged(LOST), logged(CONNECTED)];
    for (let round = 1; round <= 5; round++) {
      const down = viewWhere(client, (d) => redisStatus(d) === 'down');
      await redis.kill();
      await down;
      await redis.restart();
      await waitReady(running.app, 15_000);
      await viewWhere(client, (d) => redisStatus(d) === 'up', 15_000);
      const admin: Redis = redis.client();
      // Exactly our patterns (one per ingest topic), subscribed once each, on the restarted server.
      assert.equal(await admin.call('PUBSUB', 'NUMPAT'), INGEST_TOPICS.length);
      const before = running.app.ingest.counters.messages.redis.market_data ?? 0;
      assert.equal(await admin.publish('market_data:LOOP', JSON.stringify({ last_price: round })), 1);
      await viewWhere(client, (d) => price(d, 'LOOP') === round);
      assert.equal(running.app.ingest.counters.messages.redis.market_data, before + 1);
      admin.disconnect();
    }
    assert.equal(running.app.hub.clients.size, 1);
    // While Redis is down ioredis retries many times; the log says it once per outage, and once when it is back.
    assert.equal(logged(LOST) - lostBefore, 5);
    assert.equal(logged(CONNECTED) - connectedBefore, 5);
  });
});
