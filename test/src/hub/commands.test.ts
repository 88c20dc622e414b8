import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Principal } from '../../../src/access.ts';
import { Hub, type HubOptions } from '../../../src/hub/hub.ts';
import { StateStore } from '../../../src/state.ts';
import { FakeSocket, hubOptions } from './fakes.ts';

/** Client commands against fake sockets: the rate limit, refusals, and a token refresh. */

function setup(options: Partial<HubOptions> = {}) {
  let time = 1_000_000;
  const hub = new Hub(
    new StateStore(),
    hubOptions({
      maxSubscriptions: 3,
      rateLimit: { messagesPerSecond: 1, burst: 2, maxViolations: 2, window: 10_000 },
      now: () => time,
      ...options,
    }),
  );
  const principal: Principal = { userId: 'u1', role: 'viewer', expiresAt: undefined };
  const socket = new FakeSocket();
  const client = hub.connect(socket, 'web', 'json', principal);
  const send = (message: object) => hub.receive(client, Buffer.from(JSON.stringify(message)), false);
  return { hub, socket, client, send, advance: (ms: number) => (time += ms) };
}

describe('commands', () => {
  test('over the rate: rate_limited, then 4029 past max_violations in the window', () => {
    const { hub, socket, send } = setup();
    for (let i = 0; i < 4; i++) send({ action: 'ping' });
    assert.equal(socket.ofType('pong').length, 2);
    assert.deepEqual(
      socket.ofType('error').map((error) => error.code),
      ['rate_limited', 'rate_limited'],
    );
    send({ action: 'ping' });
    assert.deepEqual(socket.closedWith, { code: 4029, reason: 'rate_limited' });
    assert.equal(hub.stats.rejectedMessages.rate_limited, 2);
    assert.equal(hub.stats.disconnects['4029'], 1);
  });

  test('a forbidden topic or too many subscriptions refuses the whole subscribe', () => {
    const mayRead = (principal: Principal, name: string) => principal.role !== 'viewer' || name !== 'orders';
    const { client, socket, send } = setup({
      mayRead,
      rateLimit: { messagesPerSecond: 100, burst: 100, maxViolations: 2, window: 10_000 },
    });
    send({ action: 'subscribe', subscriptions: ['orders', 'account'] });
    send({ action: 'subscribe', subscriptions: ['account', 'positions', 'system', 'trades'] });
    assert.deepEqual(
      socket.ofType('error').map((error) => error.code),
      ['forbidden_topic', 'too_many_subscriptions'],
    );
    assert.equal(client.subscriptions.size, 0);
    assert.equal(client.group, undefined);
  });

  test('a fresh token for the same user extends the session and drops what its role no longer reads', () => {
    const mayRead = (principal: Principal, name: string) => principal.role === 'admin' || name !== 'orders';
    const tokens: Record<string, Principal> = {
      admin: { userId: 'u1', role: 'admin', expiresAt: undefined },
      viewer: { userId: 'u1', role: 'viewer', expiresAt: 2_000_000 },
      other: { userId: 'u2', role: 'admin', expiresAt: undefined },
    };
    const verifyToken = (token: string) => {
      const principal = tokens[token];
      if (!principal) throw Object.assign(new Error('bad signature'), { code: 'invalid' });
      return principal;
    };
    const { client, socket, send } = setup({
      mayRead,
      verifyToken,
      rateLimit: { messagesPerSecond: 100, burst: 100, maxViolations: 2, window: 10_000 },
    });
    send({ action: 'auth', token: 'admin' });
    send({ action: 'subscribe', subscriptions: ['orders', 'account'] });
    send({ action: 'auth', token: 'other' });
    send({ action: 'auth', token: 'forged' });
    assert.deepEqual(
      socket.ofType('error').map((error) => error.code),
      ['invalid_token', 'invalid_token'],
    );
    send({ action: 'auth', token: 'viewer' });
    const [, renewed] = socket.ofType('authenticated');
    assert.deepEqual(renewed, {
      type: 'authenticated',
      user_id: 'u1',
      expires_at: new Date(2_000_000).toISOString(),
    });
    assert.deepEqual([...client.subscriptions], ['account']);
    assert.deepEqual(socket.ofType('unsubscribed').at(-1)?.subscriptions, ['account']);
    clearTimeout(client.expiryTimer);
  });

  test('a connection that named no protocol is switched by a first message in the type form, and regrouped', () => {
    const mayRead = (principal: Principal, name: string) => principal.role !== 'viewer' || name !== 'orders';
    const hub = new Hub(new StateStore(), hubOptions({ mayRead, maxSubscriptions: 2 }));
    const principal: Principal = { userId: 'u1', role: 'viewer', expiresAt: undefined };
    const socket = new FakeSocket();
    const client = hub.connect(socket, 'web', 'json', principal, undefined, { typeGiven: false });
    hub.receive(
      client,
      Buffer.from(JSON.stringify({ type: 'subscribe', channels: ['orders', 'positions', 'x'] })),
      false,
    );
    assert.equal(client.protocol.name, 'b25-tui');
    assert.equal(client.type, 'tui', 'the terminal cadence: the upgrade named no type');
    // Lenient: the forbidden topic is left out (counted, not answered), the unknown name ignored.
    assert.deepEqual([...client.subscriptions], ['positions']);
    assert.equal(hub.stats.rejectedMessages.forbidden_topic, 1);
    assert.equal(client.group?.key, 'tui|b25-tui/json/|positions');
    assert.deepEqual(
      socket.messages().map((message) => message.type),
      ['positions'],
      'no subscribed reply: the terminal UI cannot read one',
    );
    // Its own ping message goes with each WebSocket ping; its pong is taken as a sign of life.
    hub.heartbeat();
    assert.equal(socket.pings, 1);
    assert.equal(socket.ofType('ping').length, 1);
    hub.receive(client, Buffer.from('{"type":"pong","timestamp":1}'), false);
    hub.receive(client, Buffer.from('{"type":"dance"}'), false);
    assert.equal(hub.stats.unansweredRejections, 1);
    assert.equal(socket.ofType('error').length, 0);
    // A later message in the type form changes nothing: only the first one chooses.
    const other = new FakeSocket();
    const stays = hub.connect(other, 'web', 'json', principal, undefined, { typeGiven: true });
    hub.receive(stays, Buffer.from(JSON.stringify({ action: 'ping' })), false);
    hub.receive(stays, Buffer.from(JSON.stringify({ type: 'subscribe', channels: ['positions'] })), false);
    assert.equal(stays.protocol.name, 'hub');
    clearTimeout(client.expiryTimer);
  });

  test('a trading action without an actions submitter is rejected, in the hub protocol as action_result', () => {
    const { socket, send } = setup();
    send({
      action: 'order.create',
      data: { symbol: 'BTCUSDT', side: 'BUY', type: 'MARKET', quantity: 1 },
      request_id: 'r1',
    });
    const [result] = socket.ofType('action_result');
    assert.equal(result.action, 'order.create');
    assert.equal(result.request_id, 'r1');
    assert.equal(result.outcome, 'rejected');
    assert.match(String(result.reason), /actions.enabled/);
    send({ action: 'order.cancel', data: {} });
    assert.equal(socket.ofType('error').at(-1)?.code, 'invalid_message');
  });
});
