import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningApp, startApp } from '../helpers/app.ts';
import { openSocket, refusedUpgrade, tryUpgrade, type WatchedSocket } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/** Size, subscription, capacity and rate limits: each refuses the one thing over it and nothing else. */

let redis: TestRedis;
const started: RunningApp[] = [];
const sockets: WatchedSocket[] = [];

before(async () => {
  redis = await TestRedis.start();
});

after(async () => {
  await Promise.all(sockets.map((socket) => socket.close()));
  await Promise.all(started.map((running) => running.close()));
  await redis.kill();
});

/** An app of the test's own, auth on, with `websocket` settings (a generous connect limit unless given). */
async function app(
  websocket: Record<string, unknown>,
  more: Record<string, Record<string, unknown>> = {},
): Promise<RunningApp> {
  const running = await startApp(redis.url, {
    auth: authOn(),
    websocket: { connect_rate_limit: { max: 1000, window: '1m' }, ...websocket },
    ...more,
  });
  started.push(running);
  return running;
}

async function open(running: RunningApp, userId: string): Promise<WatchedSocket> {
  const socket = await openSocket(running.url, { token: signToken({ userId, role: 'trader' }) });
  sockets.push(socket);
  return socket;
}

describe('frames and subscriptions', () => {
  test('a frame over websocket.max_message_size closes the socket with 1009', async () => {
    const running = await app({ max_message_size: '1KiB' });
    const socket = await open(running, 'big');
    // Exactly 1 KiB is still fine.
    const padded = JSON.stringify({ action: 'ping', pad: '' });
    const fits = JSON.stringify({ action: 'ping', pad: 'x'.repeat(1024 - padded.length) });
    assert.equal(Buffer.byteLength(fits), 1024);
    assert.equal((await socket.request(fits, 'pong', 'error')).type, 'pong');
    socket.send(JSON.stringify({ action: 'ping', pad: 'x'.repeat(2000) }));
    const { code } = await socket.closed;
    assert.equal(code, 1009);
    // Binary frames are held to the same limit.
    const binary = await open(running, 'big-binary');
    binary.send(Buffer.alloc(1025, 0x90));
    assert.equal((await binary.closed).code, 1009);
  });

  test('more than websocket.max_subscriptions: too_many_subscriptions, set unchanged', async () => {
    const running = await app({ max_subscriptions: 3 });
    const socket = await open(running, 'subscriber');
    const first = await socket.request(
      { action: 'subscribe', subscriptions: ['market_data', 'trades', 'orderbook'] },
      'subscribed',
      'error',
    );
    assert.equal(first.type, 'subscribed');
    for (const names of [['system'], ['market_data:BTCUSDT'], ['market_data', 'orders']]) {
      const reply = await socket.request(
        { action: 'subscribe', subscriptions: names },
        'subscribed',
        'error',
      );
      assert.equal(reply.code, 'too_many_subscriptions', names.join(','));
      assert.deepEqual(await socket.subscriptions(), ['market_data', 'orderbook', 'trades']);
    }
    // Names already held do not count again.
    const again = await socket.request(
      { action: 'subscribe', subscriptions: ['trades'] },
      'subscribed',
      'error',
    );
    assert.equal(again.type, 'subscribed');
    // Four at once on a fresh socket: nothing is added.
    const fresh = await open(running, 'subscriber-2');
    const four = await fresh.request(
      { action: 'subscribe', subscriptions: ['market_data', 'trades', 'orderbook', 'system'] },
      'subscribed',
      'error',
    );
    assert.equal(four.code, 'too_many_subscriptions');
    assert.deepEqual(await fresh.subscriptions(), []);
  });
});

describe('capacity', () => {
  test('websocket.max_clients: the third upgrade gets 503 server_full', async () => {
    const running = await app({ max_clients: 2 });
    await open(running, 'one');
    await open(running, 'two');
    const refusal = await refusedUpgrade(running.url, { token: signToken({ userId: 'three' }) });
    assert.equal(refusal.status, 503);
    assert.equal(refusal.body.error, 'server_full');
    assert.equal(running.app.hub.clients.size, 2);
  });

  test('websocket.max_clients holds under simultaneous upgrades', async () => {
    const running = await app({ max_clients: 2 });
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        tryUpgrade(running.url, { token: signToken({ userId: `rush-${i}` }) }),
      ),
    );
    const opened = results.filter((r) => r.opened);
    for (const r of opened) if (r.opened) sockets.push(r.socket);
    assert.equal(opened.length, 2);
    assert.deepEqual(
      results.filter((r) => !r.opened).map((r) => (r.opened ? 0 : r.status)),
      [503, 503, 503, 503, 503, 503],
    );
    assert.equal(running.app.hub.clients.size, 2);
  });

  test('websocket.max_clients_per_user: a second socket of the user gets 429, another user connects', async () => {
    const running = await app({ max_clients_per_user: 1 });
    await open(running, 'solo');
    const refusal = await refusedUpgrade(running.url, {
      token: signToken({ user_id: 'solo', role: 'trader' }),
    });
    assert.equal(refusal.status, 429);
    assert.equal(refusal.body.error, 'too_many_connections');
    // The same user through the other issuer's claim name is the same user.
    const viaOtherClaim = await refusedUpgrade(running.url, {
      token: signToken({ userId: 'solo' }),
      via: 'query',
    });
    assert.equal(viaOtherClaim.status, 429);
    const other = await open(running, 'someone-else');
    assert.equal((await other.request({ action: 'ping' }, 'pong')).type, 'pong');
    assert.equal(running.app.hub.clientCount('solo'), 1);
  });

  test('websocket.max_clients_per_user holds under simultaneous upgrades', async () => {
    const running = await app({ max_clients_per_user: 1 });
    const token = signToken({ userId: 'crowd' });
    const results = await Promise.all(Array.from({ length: 6 }, () => tryUpgrade(running.url, { token })));
    const opened = results.filter((r) => r.opened);
    for (const r of opened) if (r.opened) sockets.push(r.socket);
    assert.equal(opened.length, 1);
    assert.deepEqual(
      results.filter((r) => !r.opened).map((r) => (r.opened ? 0 : r.status)),
      [429, 429, 429, 429, 429],
    );
    assert.equal(running.app.hub.clientCount('crowd'), 1);
  });
});

describe('rate limits per IP', () => {
  test('websocket.connect_rate_limit: the fourth upgrade attempt gets 429', async () => {
    const running = await app({ connect_rate_limit: { max: 3, window: '1m' } });
    for (let i = 0; i < 3; i++) await open(running, `conn-${i}`);
    const refusal = await refusedUpgrade(running.url, { token: signToken({ userId: 'conn-3' }) });
    assert.equal(refusal.status, 429);
    assert.equal(running.app.hub.clients.size, 3);
  });

  test('refused upgrade attempts count against websocket.connect_rate_limit too', async () => {
    const running = await app({ connect_rate_limit: { max: 3, window: '1m' } });
    // Three attempts that fail the token check (as a token-guessing client's would).
    for (const token of [
      undefined,
      'garbage',
      signToken({ userId: 'x' }, 'a-secret-the-server-does-not-know-at-all'),
    ]) {
      const refusal = await refusedUpgrade(running.url, { token });
      assert.equal(refusal.status, 401);
    }
    const fourth = await tryUpgrade(running.url, { token: signToken({ userId: 'x' }) });
    if (fourth.opened) sockets.push(fourth.socket);
    assert.equal(
      fourth.opened ? 101 : fourth.status,
      429,
      'the fourth attempt from this IP within the window',
    );
  });

  test('refused REST requests count against http.rate_limit', async () => {
    const running = await app({}, { http: { rate_limit: { max: 3, window: '1m' } } });
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${running.url}/api/v1/state?token=guess-${i}`);
      assert.equal(response.status, 401);
      await response.arrayBuffer();
    }
    const fourth = await fetch(`${running.url}/api/v1/state`, {
      headers: { Authorization: `Bearer ${signToken({ userId: 'x' })}` },
    });
    await fourth.arrayBuffer();
    assert.equal(fourth.status, 429, 'the fourth request from this IP within the window');
  });

  test('http.rate_limit: the fourth authenticated request gets 429', async () => {
    const running = await app({}, { http: { rate_limit: { max: 3, window: '1m' } } });
    const headers = { Authorization: `Bearer ${signToken({ userId: 'x' })}` };
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await fetch(`${running.url}/api/v1/state`, { headers });
      statuses.push(response.status);
      await response.arrayBuffer();
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    // Health probes are never limited.
    const health = await fetch(`${running.url}/health`);
    assert.equal(health.status, 200);
  });

  test('http.rate_limit is one budget per address across routes and methods; probes and upgrades are apart', async () => {
    const running = await app(
      { connect_rate_limit: { max: 3, window: '1m' } },
      { http: { rate_limit: { max: 5, window: '1m' } } },
    );
    const headers = { Authorization: `Bearer ${signToken({ userId: 'spread', role: 'admin' })}` };
    async function call(method: string, path: string): Promise<{ status: number; remaining: string | null }> {
      const response = await fetch(`${running.url}${path}`, { method, headers });
      await response.arrayBuffer();
      return { status: response.status, remaining: response.headers.get('x-ratelimit-remaining') };
    }
    // Five requests spread over every limited route and both methods spend one budget of five.
    const spent = [
      await call('GET', '/api/v1/state'),
      await call('HEAD', '/api/v1/state'),
      await call('GET', '/debug'),
      await call('HEAD', '/debug'),
      await call('GET', '/metrics'),
    ];
    assert.deepEqual(
      spent.map(({ status }) => status),
      [200, 200, 200, 200, 200],
    );
    assert.deepEqual(
      spent.map(({ remaining }) => remaining),
      ['4', '3', '2', '1', '0'],
    );
    // The budget is spent whichever limited route or method comes next.
    for (const [method, path] of [
      ['GET', '/api/v1/state'],
      ['HEAD', '/api/v1/state'],
      ['GET', '/debug'],
      ['GET', '/metrics'],
      ['HEAD', '/metrics'],
    ]) {
      assert.equal((await call(method, path)).status, 429, `${method} ${path}`);
    }
    // Probes are never limited, and the upgrade budget (websocket.connect_rate_limit) is its own.
    assert.equal((await call('GET', '/health')).status, 200);
    assert.equal((await call('GET', '/ready')).status, 200);
    await open(running, 'spread');
    assert.equal(running.app.hub.clientCount('spread'), 1);
  });
});
