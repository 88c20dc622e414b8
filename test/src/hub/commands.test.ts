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
});
