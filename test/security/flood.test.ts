import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { JsonObject } from '../../src/client.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, openSocket, viewWhere } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/**
 * A client that floods its socket is answered `rate_limited`, then closed with 4029; its bucket is its own, so
 * every other client (of another user or the same one) is served as before.
 */

const MAX_VIOLATIONS = 10;
const BURST = 5;

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  running = await startApp(redis.url, {
    auth: authOn(),
    websocket: {
      rate_limit: { messages_per_second: 5, burst: BURST, max_violations: MAX_VIOLATIONS, window: '10s' },
      connect_rate_limit: { max: 1000, window: '1m' },
    },
    broadcast: { tui_interval: '20ms', web_interval: '50ms' },
  });
  await waitReady(running.app);
});

after(async () => {
  publisher?.disconnect();
  await running?.close();
  await redis.kill();
});

/** Sends `count` pings in one go and waits for the close; returns what the flooder saw. */
async function flood(userId: string, count = 100) {
  const flooder = await openSocket(running.url, { token: signToken({ userId }) });
  for (let i = 0; i < count; i++) flooder.send({ action: 'ping' });
  const closed = await flooder.closed;
  const codes = flooder.messages.map((m) => (m.type === 'error' ? m.code : m.type));
  return { closed, codes };
}

describe('a flooding client', () => {
  test('gets rate_limited errors, then 4029; other clients keep their diffs', async () => {
    const observer = await connectClient(running.url, {
      type: 'tui',
      token: signToken({ userId: 'observer', role: 'trader' }),
    });
    await observer.subscribe(['market_data']);
    // A second socket of the flooder's own user: its bucket is not the flooder's.
    const sibling = await openSocket(running.url, { token: signToken({ userId: 'flooder' }) });

    const flooder = await openSocket(running.url, { token: signToken({ userId: 'flooder' }) });
    for (let i = 0; i < 100; i++) flooder.send({ action: 'ping' });
    // Published while the flood is being handled.
    await publisher.publish('market_data:DURING', JSON.stringify({ last_price: 1 }));
    const { code, reason } = await flooder.closed;
    await publisher.publish('market_data:AFTER', JSON.stringify({ last_price: 2 }));

    assert.equal(code, 4029);
    assert.equal(reason, 'rate_limited');
    const codes = flooder.messages.map((m) => (m.type === 'error' ? m.code : m.type));
    const limited = codes.filter((c) => c === 'rate_limited').length;
    const pongs = codes.filter((c) => c === 'pong').length;
    assert.equal(limited, MAX_VIOLATIONS, `one rate_limited per violation up to the limit: ${codes}`);
    assert.ok(pongs >= BURST, `the burst is served: ${codes}`);
    assert.ok(pongs + limited < 100, 'most of the flood was neither served nor answered');
    assert.deepEqual(
      [...new Set(codes)].sort(),
      ['pong', 'rate_limited'],
      'nothing but pongs and rate_limited errors',
    );

    // The observer got the update published during the flood and the one after it.
    const view = await viewWhere(
      observer,
      (d) =>
        (d.market_data as JsonObject).DURING !== undefined &&
        (d.market_data as JsonObject).AFTER !== undefined,
    );
    assert.deepEqual(
      [
        (view.market_data as Record<string, JsonObject>).DURING.last_price,
        (view.market_data as Record<string, JsonObject>).AFTER.last_price,
      ],
      [1, 2],
    );
    assert.equal(observer.resyncs, 0);
    assert.equal((await sibling.request({ action: 'ping' }, 'pong', 'error')).type, 'pong');
    assert.equal(running.app.hub.clientCount('flooder'), 1, 'only the sibling is left');
    observer.close();
    await sibling.close();
  });

  test('the 4029 close is counted once, whatever the flooder sent after it', async () => {
    const before = running.app.hub.stats.disconnects['4029'] ?? 0;
    const rejected = running.app.hub.stats.rejectedMessages.rate_limited ?? 0;
    const { closed, codes } = await flood('counted');
    assert.equal(closed.code, 4029);
    assert.equal(codes.filter((c) => c === 'rate_limited').length, MAX_VIOLATIONS);
    // By the time the client has seen the TCP close, the server has read every frame before the client's close.
    assert.equal((running.app.hub.stats.disconnects['4029'] ?? 0) - before, 1, 'one socket, one close');
    assert.equal((running.app.hub.stats.rejectedMessages.rate_limited ?? 0) - rejected, MAX_VIOLATIONS);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    const line = metrics.split('\n').find((l) => l.startsWith('dashboard_disconnects_total{code="4029"}'));
    assert.equal(Number(line?.split(' ').at(-1)), before + 1, line);
  });
});
