import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';

/**
 * A Redis that stops answering without closing its connections (SIGSTOP: a frozen host, a stuck disk, a swapped-out
 * process) is detected by the PING on the reader connection, reported everywhere a lost connection is, and the
 * hub recovers, without losing what was published meanwhile, when Redis answers again.
 */

let redis: TestRedis;
let running: RunningApp;
let client: DashboardClient;
let publisher: Redis;
const log = logCollector();
const logged = (message: string) => log.lines().filter((line) => line.msg === message);
const STALLED = 'redis: not answering; serving last known state';
const ANSWERING = 'redis: answering again';

const redisStatus = (d: JsonObject) => ((d.system as JsonObject).redis as JsonObject).status;
const price = (d: JsonObject, symbol: string) =>
  ((d.market_data as JsonObject)[symbol] as JsonObject | undefined)?.last_price;

/** Sends `signal` to the Redis server; a no-op once it is gone. */
function signalRedis(signal: NodeJS.Signals): void {
  try {
    if (redis.pid !== undefined) process.kill(redis.pid, signal);
  } catch {
    // Already exited.
  }
}

async function connectedGauge(): Promise<string | undefined> {
  const response = await fetch(`${running.url}/metrics`);
  const text = await response.text();
  return /^dashboard_redis_connected (\S+)$/m.exec(text)?.[1];
}

before(async () => {
  redis = await TestRedis.start();
  running = await startApp(
    redis.url,
    {
      server: { log_level: 'info' },
      redis: { health_check_interval: '200ms', health_check_timeout: '500ms' },
    },
    { logStream: log.stream },
  );
  await waitReady(running.app);
  client = await connectClient(running.url, { type: 'tui' });
  await client.subscribe(['system', 'market_data']);
  publisher = redis.client();
});

after(async () => {
  // Whatever failed, never leave a stopped redis-server behind.
  signalRedis('SIGCONT');
  publisher.disconnect();
  client.close();
  await running.close();
  await redis.kill();
});

test('Redis frozen (SIGSTOP): /ready 503, system.redis stalled, the gauge 0, logged once; all back on SIGCONT', async () => {
  await publisher.publish('market_data:FRZUSDT', JSON.stringify({ last_price: 1 }));
  await viewWhere(client, (d) => price(d, 'FRZUSDT') === 1);
  assert.equal(redisStatus(client.view.data), 'up');
  assert.equal(await connectedGauge(), '1');

  const stalled = viewWhere(client, (d) => redisStatus(d) === 'stalled');
  signalRedis('SIGSTOP');
  await stalled;
  const ready = await fetch(`${running.url}/ready`);
  const body = (await ready.json()) as { status: string; reason?: string };
  assert.equal(ready.status, 503);
  assert.match(body.reason ?? '', /redis is stalled: no reply to PING within 500ms/);
  assert.equal(await connectedGauge(), '0');
  // Clients keep the last known state meanwhile.
  assert.equal(price(client.view.data, 'FRZUSDT'), 1);
  // Published while Redis is frozen: delivered when it runs again (the publish itself waits for it).
  const published = publisher.publish('market_data:FRZUSDT', JSON.stringify({ last_price: 2 }));

  const up = viewWhere(client, (d) => redisStatus(d) === 'up' && price(d, 'FRZUSDT') === 2);
  signalRedis('SIGCONT');
  assert.equal(await published, 1);
  await up;
  if (running.app.redisIngest.notReadyReason() !== undefined)
    await once(running.app.redisIngest.events, 'status', { signal: AbortSignal.timeout(5000) });
  assert.equal((await fetch(`${running.url}/ready`)).status, 200);
  assert.equal(await connectedGauge(), '1');
  // Nothing was reconnected: the connections were frozen, not lost.
  assert.equal(running.app.redisIngest.info.reconnects, 0);
  // One line when it stalls (however many PINGs time out), one when it answers again.
  assert.equal(logged(STALLED).length, 1);
  assert.equal(logged(ANSWERING).length, 1);
  assert.equal(logged(STALLED)[0].level, 40);
});

test('Redis busy (a script that does not end): stalled with the BUSY reason, up again after SCRIPT KILL', async () => {
  const admin = redis.client();
  const blocker = redis.client();
  try {
    await admin.config('SET', 'busy-reply-threshold', '100');
    const [stalledBefore, answeringBefore] = [logged(STALLED).length, logged(ANSWERING).length];
    const stalled = viewWhere(client, (d) => redisStatus(d) === 'stalled');
    const script = blocker.eval('while true do end', 0).catch((error: Error) => error);
    await stalled;
    assert.match(running.app.redisIngest.notReadyReason() ?? '', /redis is stalled: PING failed: BUSY/);
    const up = viewWhere(client, (d) => redisStatus(d) === 'up');
    await admin.script('KILL');
    assert.match(String(await script), /killed/i);
    await up;
    assert.equal(logged(STALLED).length - stalledBefore, 1);
    assert.equal(logged(ANSWERING).length - answeringBefore, 1);
  } finally {
    admin.disconnect();
    blocker.disconnect();
  }
});
