import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningApp, startApp } from '../helpers/app.ts';
import { openSocket, refusedUpgrade } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/**
 * Browser origins: one allowlist (exact origins and `https://*.domain` wildcards) guards the /ws upgrade and
 * drives REST CORS. A client without Origin (not a browser) is let through unless require_origin is on.
 */

const ALLOWED = ['https://app.example.com', 'https://*.trading.example'];

let redis: TestRedis;
let listed: RunningApp;
let required: RunningApp;
let empty: RunningApp;

before(async () => {
  redis = await TestRedis.start();
  const base = { max_clients_per_user: 100, connect_rate_limit: { max: 1000, window: '1m' } };
  listed = await startApp(redis.url, { auth: authOn(), websocket: { ...base, allowed_origins: ALLOWED } });
  required = await startApp(redis.url, {
    auth: authOn(),
    websocket: { ...base, allowed_origins: ALLOWED, require_origin: true },
  });
  empty = await startApp(redis.url, { auth: authOn(), websocket: { ...base, allowed_origins: [] } });
});

after(async () => {
  await Promise.all([listed, required, empty].filter(Boolean).map((running) => running.close()));
  await redis.kill();
});

const token = () => signToken({ userId: 'browser-user' });

async function assertForbidden(running: RunningApp, origin: string | undefined) {
  const known = new Set(running.app.hub.clients);
  const refusal = await refusedUpgrade(running.url, { token: token(), origin }).catch((error: Error) => {
    throw new Error(`origin ${origin}: ${error.message}`);
  });
  assert.equal(refusal.status, 403, `origin ${origin}`);
  assert.equal(refusal.body.error, 'forbidden_origin', `origin ${origin}`);
  const added = [...running.app.hub.clients].filter((client) => !known.has(client));
  assert.equal(added.length, 0, `origin ${origin}: no client registered`);
}

async function assertAccepted(running: RunningApp, origin: string | undefined) {
  const socket = await openSocket(running.url, { token: token(), origin }).catch((error: Error) => {
    throw new Error(`origin ${origin}: ${error.message}`);
  });
  assert.equal((await socket.request({ action: 'ping' }, 'pong')).type, 'pong');
  await socket.close();
}

describe('the /ws upgrade', () => {
  test('an origin not on the list gets 403 forbidden_origin', async () => {
    for (const origin of [
      'https://evil.example',
      'https://app.example.com.evil.example',
      'https://evilapp.example.com',
      'https://app.example.com:8443',
      'http://app.example.com',
      'null',
      'https://app.example.com/path',
    ]) {
      await assertForbidden(listed, origin);
    }
  });

  test('an exact match is accepted', async () => {
    await assertAccepted(listed, 'https://app.example.com');
  });

  test('a wildcard matches subdomains only, of its scheme only', async () => {
    await assertAccepted(listed, 'https://desk.trading.example');
    await assertAccepted(listed, 'https://eu.desk.trading.example');
    for (const origin of [
      'https://trading.example',
      'http://desk.trading.example',
      'https://desk.trading.example.evil.example',
      'https://eviltrading.example',
      'https://desk.trading.example:8443',
      'wss://desk.trading.example',
    ]) {
      await assertForbidden(listed, origin);
    }
  });

  test('no Origin header (not a browser) is accepted by default', async () => {
    await assertAccepted(listed, undefined);
  });

  test('with require_origin, no Origin is refused while a listed origin is accepted', async () => {
    await assertForbidden(required, undefined);
    await assertAccepted(required, 'https://app.example.com');
    await assertForbidden(required, 'https://evil.example');
  });

  test('an empty list refuses every browser origin', async () => {
    for (const origin of ['https://app.example.com', 'http://localhost:3000', 'null']) {
      await assertForbidden(empty, origin);
    }
    await assertAccepted(empty, undefined);
  });
});

describe('REST CORS', () => {
  async function get(path: string, origin: string) {
    return fetch(`${listed.url}${path}`, { headers: { Origin: origin } });
  }

  test('an allowed origin is echoed in access-control-allow-origin', async () => {
    for (const origin of ['https://app.example.com', 'https://desk.trading.example']) {
      const response = await get('/health', origin);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('access-control-allow-origin'), origin);
      assert.notEqual(response.headers.get('access-control-allow-origin'), '*');
    }
  });

  test('a disallowed origin gets no access-control-allow-origin', async () => {
    for (const origin of ['https://evil.example', 'https://trading.example', 'http://desk.trading.example']) {
      const response = await get('/health', origin);
      assert.equal(response.headers.get('access-control-allow-origin'), null, origin);
      const state = await fetch(`${listed.url}/api/v1/state`, {
        headers: { Origin: origin, Authorization: `Bearer ${token()}` },
      });
      assert.equal(state.headers.get('access-control-allow-origin'), null, `state, ${origin}`);
      await state.arrayBuffer();
    }
    // A preflight from a disallowed origin is not granted either.
    const preflight = await fetch(`${listed.url}/api/v1/state`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://evil.example',
        'Access-Control-Request-Method': 'GET',
        'Access-Control-Request-Headers': 'authorization',
      },
    });
    assert.equal(preflight.headers.get('access-control-allow-origin'), null);
    await preflight.arrayBuffer();
  });
});
