import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from '../../src/app.ts';
import type { JsonObject, StateUpdate } from '../../src/client.ts';
import { configFromDocument } from '../../src/config/load.ts';
import { waitReady } from '../helpers/app.ts';
import { connectClient } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * The snapshot keys (`market_data:*`) are read again at every start and reconnect, so a bad one would come back after
 * every restart: each key that cannot be read or applied, for whatever reason, is skipped, counted and logged, and
 * the load goes on with the others.
 */

let redis: TestRedis;
let admin: Redis;
let app: FastifyInstance | undefined;
let log: ReturnType<typeof logCollector>;

beforeEach(async () => {
  redis = await TestRedis.start();
  admin = redis.client();
  log = logCollector();
});

afterEach(async () => {
  admin.disconnect();
  await app?.close();
  app = undefined;
  await redis.kill();
});

/** A JSON text nested `levels` arrays deep, inside a market data record. */
function deeplyNested(levels: number): string {
  return `{"last_price":1,"x":${'['.repeat(levels)}${']'.repeat(levels)}}`;
}

/** Builds the app; `prepare` runs before it listens (so before the start-up load), then it starts. */
async function start(prepare: (app: FastifyInstance) => void = () => {}): Promise<string> {
  const config = configFromDocument({
    server: { host: '127.0.0.1', port: 0, log_level: 'info' },
    redis: { url: redis.url },
    auth: { enabled: false },
  });
  app = await buildApp(config, { logStream: log.stream });
  prepare(app);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  return `http://127.0.0.1:${port}`;
}

/** The value of `dashboard_redis_snapshot_skipped_total{reason}` at /metrics. */
async function skipped(url: string, reason: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = new RegExp(
    `^dashboard_redis_snapshot_skipped_total\\{reason="${reason}"\\} (\\S+)$`,
    'm',
  ).exec(text);
  return match ? Number(match[1]) : 0;
}

const skipLines = () => log.lines().filter((line) => line.msg === 'redis: skipped snapshot key');

/** Subscribes a WebSocket client; rejects if the hub closes the socket instead of sending the snapshot. */
async function snapshotOf(url: string, topics: string[]): Promise<StateUpdate> {
  const client = await connectClient(url);
  try {
    return await Promise.race([
      client.subscribe(topics),
      client.closed().then(({ code, reason }) => {
        throw new Error(`closed with ${code} ${reason} instead of a snapshot`);
      }),
    ]);
  } finally {
    client.close();
  }
}

const marketData = (data: JsonObject) => data.market_data as JsonObject;

test('a poisoned key (arrays 5,000 deep) at start-up is skipped and counted: ready, REST and subscribers served', async () => {
  await admin.set('market_data:EVIL', deeplyNested(5000));
  await admin.set('market_data:GOODUSDT', JSON.stringify({ last_price: 42 }));
  const url = await start();
  await waitReady(app!);

  const ready = await fetch(`${url}/ready`);
  assert.equal(ready.status, 200, await ready.text());
  const rest = await fetch(`${url}/api/v1/state?topics=market_data`);
  const body = await rest.text();
  assert.equal(rest.status, 200, body);
  const state = JSON.parse(body) as { data: JsonObject };
  assert.equal((marketData(state.data).GOODUSDT as JsonObject).last_price, 42);
  assert.equal(marketData(state.data).EVIL, undefined);

  const snapshot = await snapshotOf(url, ['market_data']);
  assert.equal((marketData(snapshot.data).GOODUSDT as JsonObject).last_price, 42);
  assert.equal(marketData(snapshot.data).EVIL, undefined);

  assert.equal(await skipped(url, 'invalid'), 1);
  assert.deepEqual(
    skipLines().map((line) => line.key),
    ['market_data:EVIL'],
  );
});

test('keys Redis cannot return as a string or a hash (a list, a stream) are skipped and counted', async () => {
  await admin.rpush('market_data:LISTUSDT', 'not', 'a', 'record');
  await admin.xadd('market_data:STREAMUSDT', '*', 'last_price', '1');
  await admin.hset('market_data:HASHUSDT', { last_price: '7' });
  await admin.set('market_data:GOODUSDT', JSON.stringify({ last_price: 42 }));
  const url = await start();
  await waitReady(app!);

  const snapshot = await snapshotOf(url, ['market_data']);
  assert.equal((marketData(snapshot.data).GOODUSDT as JsonObject).last_price, 42);
  // A hash is a record stored field by field: read, not skipped.
  assert.equal((marketData(snapshot.data).HASHUSDT as JsonObject).last_price, 7);
  assert.equal(await skipped(url, 'unreadable'), 2);
  // One line per reason a second: the second key's is held back, the load's summary counts both.
  const lines = skipLines();
  assert.equal(lines.length, 1);
  assert.match(String(lines[0].key), /^market_data:(LIST|STREAM)USDT$/);
  assert.match(String(lines[0].err), /WRONGTYPE/);
  assert.equal(lines[0].reason, 'unreadable');
  const [loaded] = log.lines().filter((line) => line.msg === 'redis: market data snapshot loaded');
  assert.deepEqual([loaded.keys, loaded.skipped], [2, 2]);
});

test('any other failure applying one key is skipped and counted too: the start-up load completes', async () => {
  await admin.set('market_data:AAAUSDT', JSON.stringify({ last_price: 1 }));
  await admin.set('market_data:BOOMUSDT', JSON.stringify({ last_price: 2 }));
  await admin.set('market_data:ZZZUSDT', JSON.stringify({ last_price: 3 }));
  const url = await start((built) => {
    // A failure ingest does not foresee (a bug, a RangeError of a payload nobody imagined): not a PayloadError.
    const handleMessage = built.ingest.handleMessage.bind(built.ingest);
    built.ingest.handleMessage = (channel, payload) => {
      if (channel === 'market_data:BOOMUSDT') throw new TypeError('something nobody foresaw');
      handleMessage(channel, payload);
    };
  });
  await waitReady(app!);

  assert.equal((await fetch(`${url}/ready`)).status, 200);
  const snapshot = await snapshotOf(url, ['market_data']);
  assert.deepEqual(Object.keys(marketData(snapshot.data)).sort(), ['AAAUSDT', 'ZZZUSDT']);
  assert.equal(await skipped(url, 'failed'), 1);
  const [line] = skipLines();
  assert.equal(line.key, 'market_data:BOOMUSDT');
  assert.equal(line.level, 50);

  // Reloaded (as after a reconnect), the same key is skipped again: counted, the log line held back by the throttle.
  await app!.redisIngest.reload();
  assert.equal(await skipped(url, 'failed'), 2);
  assert.equal(skipLines().length, 1);
});
