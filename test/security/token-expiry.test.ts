import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { openSocket } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { TcpWebSocket } from '../helpers/security-sockets.ts';
import { authOn, nowSeconds, SECRET_OTHER, signToken } from '../helpers/tokens.ts';

/**
 * A session lasts as long as its token: the hub closes it with 4001 at `exp` unless a fresh token for the same
 * user arrives first. Tokens here live about two seconds (clock_tolerance 0s) so the tests wait on close events,
 * never on sleeps; the tests of the first describe run side by side.
 */

let redis: TestRedis;
let running: RunningApp;
/** An app of its own for the test that counts groups and closes. */
let isolated: RunningApp;

const overrides = {
  auth: authOn({ clock_tolerance: '0s' }),
  websocket: { connect_rate_limit: { max: 1000, window: '1m' } },
};

before(async () => {
  redis = await TestRedis.start();
  running = await startApp(redis.url, overrides);
  isolated = await startApp(redis.url, overrides);
  await Promise.all([waitReady(running.app), waitReady(isolated.app)]);
});

after(async () => {
  await Promise.all([running?.close(), isolated?.close()]);
  await redis.kill();
});

/** An exp one to two seconds ahead. */
function shortExp(): number {
  return nowSeconds() + 2;
}

describe('token expiry while connected', { concurrency: true }, () => {
  test('the socket closes with 4001 token_expired at exp', async () => {
    const exp = shortExp();
    const socket = await openSocket(running.url, { token: signToken({ userId: 'expiring', exp }) });
    await socket.request({ action: 'subscribe', subscriptions: ['market_data'] }, 'state_update');
    const { code, reason } = await socket.closed;
    assert.equal(code, 4001);
    assert.equal(reason, 'token_expired');
    assert.ok(Date.now() >= exp * 1000, 'closed at exp, not before');
    assert.equal(running.app.hub.clientCount('expiring'), 0);
  });

  test('a refresh with a fresh token of the same user before exp extends the session', async () => {
    const exp = shortExp();
    const socket = await openSocket(running.url, { token: signToken({ userId: 'refresher', exp }) });
    // Same user, same short exp: its 4001 proves the first token's expiry has passed.
    const witness = await openSocket(running.url, { token: signToken({ userId: 'refresher', exp }) });
    await socket.request({ action: 'subscribe', subscriptions: ['market_data', 'system'] }, 'state_update');
    const fresh = signToken({ userId: 'refresher', email: 'r@example.com' });
    const reply = await socket.request({ action: 'auth', token: fresh }, 'authenticated', 'error');
    assert.equal(reply.type, 'authenticated', JSON.stringify(reply));
    assert.equal(reply.user_id, 'refresher');
    const newExp = JSON.parse(Buffer.from(fresh.split('.')[1], 'base64url').toString()).exp as number;
    assert.equal(reply.expires_at, new Date(newExp * 1000).toISOString());

    const witnessClose = await witness.closed;
    assert.equal(witnessClose.code, 4001);
    assert.ok(Date.now() >= exp * 1000);
    // Past the first token's exp, the refreshed socket is open, answers, and kept its subscriptions.
    assert.ok(socket.isOpen, 'the refreshed socket must still be open');
    assert.equal((await socket.request({ action: 'ping' }, 'pong')).type, 'pong');
    assert.deepEqual(await socket.subscriptions(), ['market_data', 'system']);
    await socket.close();
  });

  test('a refresh with another user’s, an expired or a forged token changes nothing', async () => {
    const exp = shortExp();
    const socket = await openSocket(running.url, { token: signToken({ userId: 'victim', exp }) });
    const refused = [
      signToken({ userId: 'someone-else' }),
      signToken({ user_id: 'someone-else', role: 'admin' }),
      signToken({ userId: 'victim', exp: nowSeconds() - 3600 }),
      signToken({ userId: 'victim' }, SECRET_OTHER),
      'not-a-token',
    ];
    for (const token of refused) {
      const reply = await socket.request({ action: 'auth', token }, 'authenticated', 'error');
      assert.equal(reply.type, 'error', `for ${token.slice(-12)}: ${JSON.stringify(reply)}`);
      assert.equal(reply.code, 'invalid_token');
    }
    const [client] = [...running.app.hub.clients].filter((c) => c.principal.userId === 'victim');
    assert.equal(client.principal.expiresAt, exp * 1000);
    assert.equal(client.principal.role, 'viewer');
    // The original expiry still holds.
    const { code, reason } = await socket.closed;
    assert.equal(code, 4001);
    assert.equal(reason, 'token_expired');
    assert.ok(Date.now() >= exp * 1000);
  });

  test('a refresh whose role reads less drops the topics it no longer allows', async () => {
    const socket = await openSocket(running.url, { token: signToken({ userId: 'demoted', role: 'trader' }) });
    await socket.request(
      { action: 'subscribe', subscriptions: ['orders', 'account', 'market_data'] },
      'state_update',
    );
    const from = socket.messages.length;
    const reply = await socket.request(
      { action: 'auth', token: signToken({ userId: 'demoted', role: 'viewer' }) },
      'authenticated',
      'error',
    );
    assert.equal(reply.type, 'authenticated');
    const unsubscribed = await socket.next((m) => m.type === 'unsubscribed', from);
    assert.deepEqual(unsubscribed.subscriptions, ['market_data']);
    const snapshot = await socket.next((m) => m.type === 'state_update', from);
    assert.deepEqual(Object.keys(snapshot.data as object), ['market_data']);
    const again = await socket.request(
      { action: 'subscribe', subscriptions: ['orders'] },
      'subscribed',
      'error',
    );
    assert.equal(again.code, 'forbidden_topic');
    await socket.close();
  });

  test('after the hub closed a socket for expiry, frames the peer still sends are ignored: no group, no client, one close counted', async () => {
    const exp = shortExp();
    const peer = await TcpWebSocket.connect(isolated.url, 'type=web&format=json', {
      Authorization: `Bearer ${signToken({ userId: 'lingering', exp })}`,
    });
    const close = await peer.nextFrame(8);
    assert.equal(close.payload.readUInt16BE(0), 4001);
    assert.equal(isolated.app.hub.clients.size, 0);
    // A peer that ignores the close frame keeps talking until it sends its own close.
    peer.sendText({ action: 'subscribe', subscriptions: ['market_data', 'trades'] });
    peer.sendText({ action: 'ping' });
    peer.sendClose();
    await peer.ended;
    // Nothing may be answered, and nothing of the closed client may remain in the hub.
    assert.deepEqual(
      peer.frames.filter((f) => f.opcode === 1).map((f) => f.payload.toString()),
      [],
      'no replies after the close frame',
    );
    assert.equal(isolated.app.hub.clients.size, 0);
    assert.equal(isolated.app.hub.groupCount, 0, 'a closed client must not join a group');
    assert.equal(isolated.app.hub.stats.disconnects['4001'], 1);
  });
});
