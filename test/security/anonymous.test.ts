import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { Principal } from '../../src/access.ts';
import { ConfigError } from '../../src/config/errors.ts';
import { configFromDocument } from '../../src/config/load.ts';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { openSocket, refusedUpgrade, type UpgradeOptions, type WatchedSocket } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, nowSeconds, SECRET_OTHER, signToken } from '../helpers/tokens.ts';

/**
 * auth.anonymous: the trading system's web dashboard and terminal UI send no token. With auth.anonymous on, an
 * upgrade (or a REST read) with no credential at all is admitted from auth.anonymous.allowed_cidrs as
 * `anonymous@<address>` with auth.anonymous.role; from anywhere else it is 401 missing_token, and a request that
 * carries a credential is always judged by it. The address is the socket's peer, or what a proxy listed in
 * server.trust_proxy forwards in X-Forwarded-For. Every server here listens on 127.0.0.1.
 */

let redis: TestRedis;
let publisher: Redis;
/** Anonymous from 127.0.0.1/32. */
let local: RunningApp;
const localLog = logCollector();
/** The same, at most 2 sockets per user: only the per-user test opens anonymous sockets here. */
let crowded: RunningApp;
/** Anonymous from 10.0.0.0/8 only: the test's own address (loopback) is outside it. */
let remote: RunningApp;
/** Trusts 127.0.0.1 as a proxy; anonymous from 10.1.2.3/32. */
let proxied: RunningApp;
/** The same anonymous rule, no trusted proxy. */
let direct: RunningApp;
/** auth.enabled false: the anonymous settings change nothing. */
let open: RunningApp;
const started: RunningApp[] = [];

const websocket = { connect_rate_limit: { max: 1000, window: '1m' } };
const anonymousFrom = (...allowed_cidrs: string[]) => ({ enabled: true, role: 'viewer', allowed_cidrs });

async function start(
  overrides: Record<string, Record<string, unknown>>,
  logStream?: NodeJS.WritableStream,
): Promise<RunningApp> {
  const running = await startApp(redis.url, { websocket, ...overrides }, logStream ? { logStream } : {});
  started.push(running);
  return running;
}

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  // One at a time: each build registers the app's metrics in prom-client's one registry.
  local = await start(
    {
      server: { log_level: 'warn' },
      auth: authOn({}, { anonymous: anonymousFrom('127.0.0.1/32') }),
      broadcast: { tui_interval: '20ms', web_interval: '50ms' },
    },
    localLog.stream,
  );
  crowded = await start({
    auth: authOn({}, { anonymous: anonymousFrom('127.0.0.1/32') }),
    websocket: { ...websocket, max_clients_per_user: 2 },
  });
  remote = await start({ auth: authOn({}, { anonymous: anonymousFrom('10.0.0.0/8') }) });
  proxied = await start({
    server: { trust_proxy: ['127.0.0.1/32'] },
    auth: authOn({}, { anonymous: anonymousFrom('10.1.2.3/32') }),
  });
  direct = await start({ auth: authOn({}, { anonymous: anonymousFrom('10.1.2.3/32') }) });
  open = await start({ auth: { enabled: false, anonymous: anonymousFrom('10.1.2.3/32') } });
  await Promise.all(started.map((running) => waitReady(running.app)));
  await publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: 64000 }));
  await publisher.publish('orders:all', JSON.stringify({ order_id: 'o1', symbol: 'BTCUSDT', state: 'NEW' }));
});

after(async () => {
  publisher?.disconnect();
  await Promise.all(started.map((running) => running.close()));
  await redis.kill();
});

/** Opens a socket and returns it with the principal the hub gave it. */
async function admitted(
  running: RunningApp,
  options: UpgradeOptions = {},
): Promise<{ socket: WatchedSocket; principal: Principal }> {
  const known = new Set(running.app.hub.clients);
  const socket = await openSocket(running.url, options);
  // The hub registers the client in the route handler, before the 101 reaches the client.
  const added = [...running.app.hub.clients].filter((client) => !known.has(client));
  assert.equal(added.length, 1, 'one new client in the hub');
  return { socket, principal: added[0].principal };
}

/** Asserts a refusal with `status` and `error`, and that the hub registered no client. */
async function assertRefused(
  running: RunningApp,
  options: UpgradeOptions,
  error: string,
  label: string,
  status = 401,
) {
  // Compared by identity: a socket an earlier test closed may still be leaving the hub.
  const known = new Set(running.app.hub.clients);
  const refusal = await refusedUpgrade(running.url, options);
  assert.equal(refusal.status, status, `${label}: status`);
  assert.equal(refusal.body.error, error, `${label}: error code`);
  const added = [...running.app.hub.clients].filter((client) => !known.has(client));
  assert.equal(added.length, 0, `${label}: the hub must not register a client`);
}

const ANONYMOUS_LOCAL: Principal = {
  userId: 'anonymous@127.0.0.1',
  role: 'viewer',
  expiresAt: undefined,
  tokenless: true,
};

describe('token-less upgrades from an allowed address', () => {
  test('are admitted as anonymous@<address> with the configured role', async () => {
    const { socket, principal } = await admitted(local, { query: 'type=tui' });
    assert.deepEqual(principal, ANONYMOUS_LOCAL);
    assert.equal(socket.ws.protocol, '', 'no subprotocol was offered, none is selected');
    assert.equal((await socket.request({ action: 'ping' }, 'pong')).type, 'pong');
    await socket.close();
  });

  test('read what the role allows and are refused the rest', async () => {
    const { socket } = await admitted(local, { query: 'type=tui' });
    const refused = await socket.request(
      { action: 'subscribe', subscriptions: ['orders'] },
      'subscribed',
      'error',
    );
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'forbidden_topic');
    const from = socket.messages.length;
    const reply = await socket.request(
      { action: 'subscribe', subscriptions: ['market_data'] },
      'subscribed',
      'error',
    );
    assert.deepEqual(reply.subscriptions, ['market_data']);
    const snapshot = await socket.next((m) => m.type === 'state_update', from);
    assert.deepEqual(Object.keys(snapshot.data as object), ['market_data']);
    // The price published at start, in the snapshot or in a diff after it (ingest may finish after the subscribe).
    await socket.next((m) => JSON.stringify(m).includes('"last_price":64000'), from);
    // Published after the order: once this diff arrives, an order sent to this socket would have come before it.
    await publisher.publish('market_data:ETHUSDT', JSON.stringify({ last_price: 3000 }));
    await socket.next((m) => m.type === 'diff_update' && JSON.stringify(m.changes).includes('ETHUSDT'), from);
    assert.ok(!JSON.stringify(socket.messages).includes('o1'), 'the order never reaches a viewer');
    await socket.close();
  });

  test('websocket.max_clients_per_user counts per anonymous address', async () => {
    const first = await admitted(crowded);
    const second = await admitted(crowded);
    assert.equal(crowded.app.hub.clientCount('anonymous@127.0.0.1'), 2);
    await assertRefused(crowded, {}, 'too_many_connections', 'third from 127.0.0.1', 429);
    // A token's user is another user: still admitted.
    const withToken = await admitted(crowded, { token: signToken({ userId: 'ann' }) });
    assert.equal(withToken.principal.userId, 'ann');
    await Promise.all([first.socket.close(), second.socket.close(), withToken.socket.close()]);
  });

  test('one warning at start names the CIDRs and the role', () => {
    const warnings = localLog.lines().filter((line) => String(line.msg).includes('auth.anonymous'));
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0].level, 40);
    assert.match(String(warnings[0].msg), /127\.0\.0\.1\/32.*role viewer/);
    assert.deepEqual(warnings[0].allowed_cidrs, ['127.0.0.1/32']);
  });
});

describe('everything else is refused as before', () => {
  test('a token-less upgrade from outside allowed_cidrs: 401 missing_token, no socket', async () => {
    await assertRefused(remote, {}, 'missing_token', 'loopback, 10.0.0.0/8 allowed');
    await assertRefused(remote, { query: 'type=tui' }, 'missing_token', 'tui');
  });

  test('a request that carries a credential is judged by it, never admitted anonymously', async () => {
    const bad = `${signToken({ userId: 'mallory' })}x`;
    for (const via of ['header', 'subprotocol', 'query'] as const) {
      await assertRefused(local, { token: bad, via }, 'invalid_token', `bad signature via ${via}`);
    }
    await assertRefused(
      local,
      { token: signToken({ userId: 'mallory' }, SECRET_OTHER) },
      'invalid_token',
      'other secret',
    );
    await assertRefused(
      local,
      { token: signToken({ userId: 'late', exp: nowSeconds() - 60 }) },
      'token_expired',
      'expired',
    );
    // Tried to send one and none came through: told so, not downgraded to the anonymous role.
    await assertRefused(
      local,
      { headers: { Authorization: 'Basic dXNlcjpwYXNz' } },
      'missing_token',
      'basic',
    );
    await assertRefused(local, { protocols: ['bearer'] }, 'missing_token', 'bare bearer subprotocol');
    await assertRefused(local, { query: 'type=web&format=json&token=' }, 'missing_token', 'empty ?token=');
  });

  test('a valid token works from anywhere, with its own user and role', async () => {
    for (const running of [local, remote]) {
      const { socket, principal } = await admitted(running, {
        token: signToken({ user_id: 'tina', role: 'trader' }),
        via: 'subprotocol',
      });
      assert.equal(principal.userId, 'tina');
      assert.equal(principal.role, 'trader');
      assert.equal(principal.tokenless, undefined);
      const reply = await socket.request(
        { action: 'subscribe', subscriptions: ['orders'] },
        'subscribed',
        'error',
      );
      assert.deepEqual(reply.subscriptions, ['orders']);
      await socket.close();
    }
  });

  test('with auth.enabled false the anonymous settings change nothing', async () => {
    const { socket, principal } = await admitted(open);
    assert.deepEqual(principal, { userId: 'anonymous', role: '*', expiresAt: undefined, tokenless: true });
    await socket.close();
  });
});

describe('server.trust_proxy', () => {
  const forwarded = (address: string): UpgradeOptions => ({ headers: { 'X-Forwarded-For': address } });

  test('from a trusted proxy, the forwarded address decides', async () => {
    const { socket, principal } = await admitted(proxied, forwarded('10.1.2.3'));
    assert.deepEqual(principal, { ...ANONYMOUS_LOCAL, userId: 'anonymous@10.1.2.3' });
    await socket.close();
    await assertRefused(proxied, forwarded('10.9.9.9'), 'missing_token', 'forwarded 10.9.9.9');
    // The proxy itself (no header) is not in allowed_cidrs.
    await assertRefused(proxied, {}, 'missing_token', 'no header');
    // A client cannot prepend an allowed address: the proxy appends the real one, and that is the one used.
    await assertRefused(proxied, forwarded('10.1.2.3, 10.9.9.9'), 'missing_token', 'prepended');
  });

  test('without trust_proxy the header is ignored', async () => {
    await assertRefused(direct, forwarded('10.1.2.3'), 'missing_token', 'untrusted forwarded 10.1.2.3');
  });

  test('the ops allowlist sees the forwarded address too', async () => {
    const throughProxy = await fetch(`${proxied.url}/debug`, { headers: { 'X-Forwarded-For': '10.9.9.9' } });
    await throughProxy.text();
    assert.equal(throughProxy.status, 403);
    const fromLoopback = await fetch(`${proxied.url}/debug`);
    await fromLoopback.text();
    assert.equal(fromLoopback.status, 200);
    const spoofed = await fetch(`${direct.url}/debug`, { headers: { 'X-Forwarded-For': '10.9.9.9' } });
    await spoofed.text();
    assert.equal(spoofed.status, 200, 'without trust_proxy the peer (loopback) is what counts');
  });
});

describe('GET /api/v1/state follows the same rule', () => {
  async function getState(running: RunningApp, query = '', headers: Record<string, string> = {}) {
    const response = await fetch(`${running.url}/api/v1/state${query}`, { headers });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  test('token-less from an allowed address: what the role reads', async () => {
    const all = await getState(local);
    assert.equal(all.status, 200);
    const topics = Object.keys(all.body.data as object);
    for (const readable of ['market_data', 'orderbook', 'trades', 'strategies'])
      assert.ok(topics.includes(readable), `${readable} in ${topics}`);
    for (const secret of ['orders', 'positions', 'account'])
      assert.ok(!topics.includes(secret), `${secret} not in ${topics}`);
    const orders = await getState(local, '?topics=orders');
    assert.equal(orders.status, 403);
    assert.equal(orders.body.error, 'forbidden_topic');
    const viaProxy = await getState(proxied, '?topics=market_data', { 'X-Forwarded-For': '10.1.2.3' });
    assert.equal(viaProxy.status, 200);
  });

  test('token-less from elsewhere, or with a bad token: 401', async () => {
    const elsewhere = await getState(remote);
    assert.equal(elsewhere.status, 401);
    assert.equal(elsewhere.body.error, 'missing_token');
    const bad = await getState(local, '', { Authorization: 'Bearer not-a-jwt' });
    assert.equal(bad.status, 401);
    assert.equal(bad.body.error, 'invalid_token');
  });
});

describe('config', () => {
  const TEST_SECRET = { DASHBOARD_AUTH__JWT__SECRET: 'test-secret-of-at-least-thirty-two-bytes' };

  function configError(document: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): string {
    try {
      configFromDocument(structuredClone(document), { ...TEST_SECRET, ...env });
    } catch (error) {
      assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
      assert.ok(!error.message.includes('\n'), `one line: ${error.message}`);
      return error.message;
    }
    assert.fail(`accepted ${JSON.stringify(document)}`);
  }

  test('defaults: off, viewer, no addresses; no trusted proxy', () => {
    const config = configFromDocument({}, TEST_SECRET);
    assert.deepEqual(config.auth.anonymous, { enabled: false, role: 'viewer', allowed_cidrs: [] });
    assert.deepEqual(config.server.trust_proxy, []);
  });

  test('an anonymous rule that admits nobody stops the service', () => {
    assert.match(
      configError({ auth: { anonymous: { enabled: true } } }),
      /^config: auth\.anonymous\.enabled is true but auth\.anonymous\.allowed_cidrs is empty/,
    );
    assert.match(
      configError(
        { auth: { anonymous: { enabled: true } } },
        { DASHBOARD_AUTH__ANONYMOUS__ALLOWED_CIDRS: '[]' },
      ),
      /auth\.anonymous\.allowed_cidrs is empty.*\(from DASHBOARD_AUTH__ANONYMOUS__ALLOWED_CIDRS\)$/,
    );
    // Off, an empty list is the default and fine.
    assert.doesNotThrow(() => configFromDocument({ auth: { anonymous: { enabled: false } } }, TEST_SECRET));
  });

  test('the role must be one of auth.topic_roles', () => {
    assert.match(
      configError({
        auth: {
          anonymous: anonymousFrom('10.0.0.0/8'),
          topic_roles: { trader: ['*'] },
          default_role: 'trader',
        },
      }),
      /auth\.anonymous\.role "viewer" is not a role of auth\.topic_roles \(trader\)/,
    );
    assert.match(
      configError({ auth: { anonymous: { ...anonymousFrom('10.0.0.0/8'), role: 'constructor' } } }),
      /auth\.anonymous\.role "constructor"/,
    );
  });

  test('allowed_cidrs and trust_proxy take CIDRs, checked like ops.allowed_cidrs', () => {
    assert.match(
      configError({ auth: { anonymous: anonymousFrom('10.0.0.0/33') } }),
      /^config: auth\.anonymous\.allowed_cidrs has "10\.0\.0\.0\/33", which is not an IPv4 or IPv6 CIDR$/,
    );
    assert.match(
      configError({ server: { trust_proxy: ['10.0.0.1/40'] } }),
      /^config: server\.trust_proxy has "10\.0\.0\.1\/40", which is not an IPv4 or IPv6 CIDR$/,
    );
    assert.match(
      configError({ server: { trust_proxy: ['999.1.1.1/32'] } }, {}),
      /server\.trust_proxy has "999\.1\.1\.1\/32"/,
    );
    // The schema refuses what is not shaped like a CIDR (a bare address, a name) and `true` (trust everyone).
    assert.match(configError({ server: { trust_proxy: ['127.0.0.1'] } }), /server\.trust_proxy\.0/);
    assert.match(configError({ server: { trust_proxy: true } }), /server\.trust_proxy/);
    assert.match(configError({}, { DASHBOARD_SERVER__TRUST_PROXY: 'true' }), /server\.trust_proxy/);
    // A /0 trusts every peer's header: Fastify's `true` by another name.
    assert.match(
      configError({ server: { trust_proxy: ['10.0.0.1/32', '::/0'] } }),
      /^config: server\.trust_proxy has "::\/0", which trusts every address/,
    );
    assert.match(
      configError({ server: { trust_proxy: ['0.0.0.0/00'] } }),
      /"0\.0\.0\.0\/00", which trusts every/,
    );
    const config = configFromDocument(
      {
        server: { trust_proxy: ['127.0.0.1/32', 'fd00::/8'] },
        auth: { anonymous: anonymousFrom('10.1.0.0/16') },
      },
      TEST_SECRET,
    );
    assert.deepEqual(config.server.trust_proxy, ['127.0.0.1/32', 'fd00::/8']);
    assert.deepEqual(config.auth.anonymous.allowed_cidrs, ['10.1.0.0/16']);
  });

  test('src/server.ts stops with one line naming the key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-anonymous-'));
    try {
      const cases = [
        ['auth:\n  anonymous:\n    enabled: true\n', /auth\.anonymous\.allowed_cidrs is empty/],
        ['server:\n  trust_proxy: [10.0.0.0/99]\n', /server\.trust_proxy has "10\.0\.0\.0\/99"/],
      ] as const;
      for (const [index, [text, expected]] of cases.entries()) {
        const path = join(dir, `config-${index}.yaml`);
        writeFileSync(path, text);
        const result = spawnSync(
          process.execPath,
          [new URL('../../src/server.ts', import.meta.url).pathname, '--check-config', '--config', path],
          { encoding: 'utf8', env: { ...process.env, ...TEST_SECRET }, timeout: 30_000 },
        );
        assert.equal(result.status, 1, result.stderr);
        const lines = result.stderr.trim().split('\n');
        assert.equal(lines.length, 1, result.stderr);
        assert.match(lines[0], /^dashboard-server: config: /);
        assert.match(lines[0], expected);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
