import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { hostname, networkInterfaces } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { TestRedis } from '../helpers/redis.ts';
import { authOn, nowSeconds, SECRET_OTHER, signToken, unsignedToken } from '../helpers/tokens.ts';

/**
 * /health and /ready are open to probes. /debug and /metrics answer loopback, ops.allowed_cidrs, or an admin
 * token. A non-loopback caller is made real by listening on this machine's own non-loopback address and
 * connecting to it: the request then comes from that address.
 */

function externalAddress(family: 'IPv4' | 'IPv6'): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const info of addresses ?? []) {
      if (info.family === family && !info.internal && !info.address.startsWith('fe80')) return info.address;
    }
  }
  return undefined;
}

const IPV4 = externalAddress('IPv4');
const IPV6 = externalAddress('IPv6');

let redis: TestRedis;
let loopback: RunningApp;
/** Listening on the non-loopback address, no ops.allowed_cidrs. */
let external: { running: RunningApp; url: string } | undefined;
/** Listening on it, with the address in ops.allowed_cidrs. */
let allowed: { running: RunningApp; url: string } | undefined;
/** Listening on it, with a CIDR that does not contain it. */
let elsewhere: { running: RunningApp; url: string } | undefined;
/** Listening on the non-loopback IPv6 address, with it in ops.allowed_cidrs. */
let allowedV6: { running: RunningApp; url: string } | undefined;

async function listenOn(host: string, ops: Record<string, unknown> = {}) {
  const running = await startApp(redis.url, { server: { host }, auth: authOn(), ops });
  const { port } = running.app.server.address() as { port: number };
  return { running, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}` };
}

before(async () => {
  redis = await TestRedis.start();
  loopback = await startApp(redis.url, { auth: authOn() });
  if (IPV4) {
    external = await listenOn(IPV4);
    allowed = await listenOn(IPV4, { allowed_cidrs: [`${IPV4}/32`] });
    const [a, b, c] = IPV4.split('.').map(Number);
    // The half of the address's /24 that does not hold it.
    const otherHalf = Number(IPV4.split('.')[3]) < 128 ? 128 : 0;
    elsewhere = await listenOn(IPV4, { allowed_cidrs: [`${a}.${b}.${c}.${otherHalf}/25`] });
  }
  if (IPV6) allowedV6 = await listenOn(IPV6, { allowed_cidrs: [`${IPV6}/128`] });
  await Promise.all(
    [loopback, external?.running, allowed?.running, elsewhere?.running, allowedV6?.running]
      .filter((r): r is RunningApp => r !== undefined)
      .map((r) => waitReady(r.app)),
  );
});

after(async () => {
  await Promise.all(
    [loopback, external?.running, allowed?.running, elsewhere?.running, allowedV6?.running]
      .filter((r): r is RunningApp => r !== undefined)
      .map((r) => r.close()),
  );
  await redis.kill();
});

async function status(url: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  const response = await fetch(`${url}${path}`, { headers });
  await response.arrayBuffer();
  return response.status;
}

const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

function needExternal<T>(value: T | undefined): T {
  assert.ok(value, 'this machine has no non-loopback IPv4 address to make a non-loopback request from');
  return value;
}

describe('from loopback', () => {
  test('/health and /ready need no token', async () => {
    assert.equal(await status(loopback.url, '/health'), 200);
    assert.equal(await status(loopback.url, '/ready'), 200);
  });

  test('/debug and /metrics are allowed without a token', async () => {
    assert.equal(await status(loopback.url, '/debug'), 200);
    assert.equal(await status(loopback.url, '/metrics'), 200);
  });
});

/** A GET with a Host header of our choosing (fetch does not let a caller set Host). */
function statusWithHost(url: string, path: string, host: string, headers: Record<string, string> = {}) {
  return new Promise<number>((resolve, reject) => {
    const request = httpRequest(`${url}${path}`, { headers: { ...headers, host } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
    request.end();
  });
}

describe('from loopback, by a name that is not this host (DNS rebinding)', () => {
  test('a Host that is no address, localhost or this machine is refused; this host by any of those is allowed', async () => {
    const { port } = new URL(loopback.url);
    for (const path of ['/debug', '/metrics', '/admin']) {
      assert.equal(await statusWithHost(loopback.url, path, `rebound.example:${port}`), 403, path);
    }
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `${hostname()}:${port}`,
      `LOCALHOST:${port}`,
    ]) {
      assert.equal(await statusWithHost(loopback.url, '/debug', host), 200, host);
    }
    // An admin token is no address-granted access: the Host does not matter.
    const admin = bearer(signToken({ userId: 'ops', role: 'admin' }));
    assert.equal(await statusWithHost(loopback.url, '/debug', `rebound.example:${port}`, admin), 200);
  });

  test('ops.allowed_hosts names more hosts', async () => {
    const listed = await startApp(redis.url, { auth: authOn(), ops: { allowed_hosts: ['hub.internal'] } });
    try {
      const { port } = new URL(listed.url);
      assert.equal(await statusWithHost(listed.url, '/debug', `hub.internal:${port}`), 200);
      assert.equal(await statusWithHost(listed.url, '/debug', `other.internal:${port}`), 403);
    } finally {
      await listed.close();
    }
  });
});

describe('from a non-loopback address', () => {
  test('/health and /ready need no token', async () => {
    const { url } = needExternal(external);
    assert.equal(await status(url, '/health'), 200);
    assert.equal(await status(url, '/ready'), 200);
  });

  test('/debug and /metrics: 403 without a token or with a non-admin or bad admin token', async () => {
    const { url } = needExternal(external);
    const refused: [string, Record<string, string>][] = [
      ['no token', {}],
      ['viewer', bearer(signToken({ userId: 'v' }))],
      ['trader', bearer(signToken({ userId: 't', role: 'trader' }))],
      ['forged admin', bearer(signToken({ userId: 'a', role: 'admin' }, SECRET_OTHER))],
      ['expired admin', bearer(signToken({ userId: 'a', role: 'admin', exp: nowSeconds() - 3600 }))],
      ['alg none admin', bearer(unsignedToken({ userId: 'a', role: 'admin' }))],
      ['spoofed forwarding headers', { 'X-Forwarded-For': '127.0.0.1', 'X-Real-IP': '127.0.0.1' }],
    ];
    for (const path of ['/debug', '/metrics']) {
      for (const [label, headers] of refused) {
        assert.equal(await status(url, path, headers), 403, `${path}, ${label}`);
      }
    }
    const body = await (await fetch(`${url}/debug`)).json();
    assert.deepEqual(Object.keys(body as object).sort(), ['error', 'message']);
    assert.equal((body as { error: string }).error, 'forbidden');
  });

  test('/debug and /metrics: 200 with an admin token, in the header or the query', async () => {
    const { url } = needExternal(external);
    const admin = signToken({ user_id: 'root', role: 'admin' });
    assert.equal(await status(url, '/debug', bearer(admin)), 200);
    assert.equal(await status(url, `/debug?token=${admin}`), 200);
    assert.equal(await status(url, '/metrics', bearer(admin)), 200);
  });

  test('ops.allowed_cidrs containing the address: 200 without a token', async () => {
    const { url } = needExternal(allowed);
    assert.equal(await status(url, '/debug'), 200);
    assert.equal(await status(url, '/metrics'), 200);
  });

  test('ops.allowed_cidrs not containing the address: still 403', async () => {
    const { url } = needExternal(elsewhere);
    assert.equal(await status(url, '/debug'), 403);
    assert.equal(await status(url, '/metrics'), 403);
  });

  test('an IPv6 address in ops.allowed_cidrs is admitted', async () => {
    if (!IPV6) {
      // No non-loopback IPv6 address here: check the IPv4 case stands in for it.
      assert.equal(await status(needExternal(allowed).url, '/debug'), 200);
      return;
    }
    const { url } = allowedV6!;
    assert.equal(await status(url, '/debug'), 200);
  });
});
