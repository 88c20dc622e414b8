import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type RunningApp, startApp } from '../helpers/app.ts';
import { openSocket, refusedUpgrade, type UpgradeOptions } from '../helpers/client.ts';
import { TestRedis } from '../helpers/redis.ts';
import { type ServerProcess, startServerProcess } from '../helpers/security-process.ts';
import {
  authOn,
  ecKeys,
  forgedHmacToken,
  nowSeconds,
  rsaKeys,
  SECRET_A,
  SECRET_B,
  SECRET_OTHER,
  signToken,
  unsignedToken,
} from '../helpers/tokens.ts';

/**
 * The /ws upgrade checks its token before any socket exists: every bad token is an HTTP 401 with a JSON body
 * naming why, and the hub never sees a client. Good tokens from both issuers, and every key kind, get in.
 */

const ISSUER = 'https://login.example';
const AUDIENCE = 'dashboard';

let redis: TestRedis;
/** HS256 with two secrets: the login service's and the API gateway's. */
let hs: RunningApp;
/** HS256 with an issuer and an audience, no clock tolerance. */
let strict: RunningApp;
/** HS256, RS256 and ES256 together: a secret and two public keys. */
let mixed: RunningApp;
/**
 * RS256 only and ES256 only, with a public key and no secret: the setting algorithm confusion attacks. They run
 * as child processes of src/server.ts: a build that fails in-process would leave its timers behind. Undefined
 * if the process could not start.
 */
let rsaOnly: ServerProcess | undefined;
let rsaOnlyError: unknown;
let ecOnly: ServerProcess | undefined;
let ecOnlyError: unknown;
const started: RunningApp[] = [];

const limits = { connect_rate_limit: { max: 1000, window: '1m' } };

async function start(overrides: Record<string, Record<string, unknown>>): Promise<RunningApp> {
  const running = await startApp(redis.url, { websocket: limits, ...overrides });
  started.push(running);
  return running;
}

before(async () => {
  redis = await TestRedis.start();
  hs = await start({ auth: authOn({ secret: [SECRET_A, SECRET_B] }) });
  strict = await start({ auth: authOn({ issuer: ISSUER, audience: AUDIENCE, clock_tolerance: '0s' }) });
  mixed = await start({
    auth: authOn({
      algorithms: ['HS256', 'RS256', 'ES256'],
      public_key: [rsaKeys().publicKey, ecKeys().publicKey],
    }),
  });
  const publicOnly = (algorithm: string, key: string) => ({
    redis: { url: redis.url },
    websocket: limits,
    auth: authOn({ algorithms: [algorithm], secret: undefined, public_key: key }),
  });
  await Promise.all([
    startServerProcess(publicOnly('RS256', rsaKeys().publicKey)).then(
      (p) => {
        rsaOnly = p;
      },
      (error) => {
        rsaOnlyError = error;
      },
    ),
    startServerProcess(publicOnly('ES256', ecKeys().publicKey)).then(
      (p) => {
        ecOnly = p;
      },
      (error) => {
        ecOnlyError = error;
      },
    ),
  ]);
});

after(async () => {
  await Promise.all([...started.map((running) => running.close()), rsaOnly?.close(), ecOnly?.close()]);
  await redis.kill();
});

/** The RS256-only server; fails the test, saying why, if it could not start. */
function rsaApp(): ServerProcess {
  assert.ok(rsaOnly, `an RS256-only config (public_key, no secret) must start; ${rsaOnlyError}`);
  return rsaOnly;
}

function ecApp(): ServerProcess {
  assert.ok(ecOnly, `an ES256-only config (public_key, no secret) must start; ${ecOnlyError}`);
  return ecOnly;
}

/** Asserts a 401 with `error`, a message, and (in-process apps) that the hub registered no client. */
async function assertUnauthorized(
  running: RunningApp | ServerProcess,
  options: UpgradeOptions,
  error: string,
  label: string,
) {
  const hub = 'app' in running ? running.app.hub : undefined;
  const known = new Set(hub?.clients);
  const refusal = await refusedUpgrade(running.url, options).catch((failure: Error) => {
    throw new Error(`${label}: ${failure.message}`);
  });
  assert.equal(refusal.status, 401, `${label}: status`);
  assert.equal(refusal.body.error, error, `${label}: error code`);
  assert.equal(typeof refusal.body.message, 'string', `${label}: message`);
  assert.match(String(refusal.headers['content-type']), /application\/json/, `${label}: content-type`);
  const added = [...(hub?.clients ?? [])].filter((client) => !known.has(client));
  assert.equal(added.length, 0, `${label}: the hub must not register a client`);
}

describe('refused upgrades: 401, no socket', () => {
  test('no token at all', async () => {
    await assertUnauthorized(hs, {}, 'missing_token', 'no token');
    // An Authorization header that is not a bearer token counts as no token.
    await assertUnauthorized(
      hs,
      { headers: { Authorization: 'Basic dXNlcjpwYXNz' } },
      'missing_token',
      'basic',
    );
    // The bearer subprotocol with nothing after it, and an empty ?token=.
    await assertUnauthorized(hs, { protocols: ['bearer'] }, 'missing_token', 'bare bearer subprotocol');
    await assertUnauthorized(
      hs,
      { query: 'type=web&format=json&token=' },
      'missing_token',
      'empty query token',
    );
  });

  test('malformed tokens, in each place a token may travel', async () => {
    const malformed = ['not-a-jwt', 'a.b.c', 'eyJhbGciOiJIUzI1NiJ9..', `${signToken({ userId: 'u1' })}x`];
    for (const token of malformed) {
      for (const via of ['header', 'subprotocol', 'query'] as const) {
        await assertUnauthorized(hs, { token, via }, 'invalid_token', `${token.slice(0, 20)} via ${via}`);
      }
    }
  });

  test('a signature by a secret the server does not hold', async () => {
    await assertUnauthorized(hs, { token: signToken({ userId: 'u1' }, SECRET_OTHER) }, 'invalid_token', 'hs');
    await assertUnauthorized(
      mixed,
      { token: signToken({ userId: 'u1', role: 'admin' }, SECRET_OTHER) },
      'invalid_token',
      'mixed',
    );
    // A payload changed after signing (role escalation) breaks the signature.
    const [header, , signature] = signToken({ userId: 'u1', role: 'viewer' }).split('.');
    const payload = Buffer.from(
      JSON.stringify({ userId: 'u1', role: 'admin', exp: nowSeconds() + 600 }),
    ).toString('base64url');
    await assertUnauthorized(hs, { token: `${header}.${payload}.${signature}` }, 'invalid_token', 'tampered');
  });

  test('alg none is never accepted', async () => {
    const token = unsignedToken({ userId: 'u1', role: 'admin' });
    for (const running of [hs, strict, mixed]) {
      await assertUnauthorized(running, { token }, 'invalid_token', `none on ${running.url}`);
    }
    // Spelled differently, or with a signature tacked on.
    const none = (alg: string) =>
      `${Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url')}.${
        unsignedToken({ userId: 'u1', role: 'admin' }).split('.')[1]
      }.c2lnbmF0dXJl`;
    for (const alg of ['none', 'None', 'NONE']) {
      await assertUnauthorized(hs, { token: none(alg) }, 'invalid_token', alg);
    }
  });

  test('algorithm confusion: HS256 signed with the public key text, against an RS256-only config', async () => {
    const claims = { userId: 'attacker', role: 'admin', exp: nowSeconds() + 600 };
    const running = rsaApp();
    for (const pem of [rsaKeys().publicKey, rsaKeys().publicKey.trim()]) {
      const token = forgedHmacToken({ alg: 'HS256', typ: 'JWT' }, claims, pem);
      await assertUnauthorized(running, { token }, 'invalid_token', 'rsa-only');
    }
    await assertUnauthorized(running, { token: unsignedToken(claims) }, 'invalid_token', 'none, rsa-only');
  });

  test('algorithm confusion against a config with a secret and public keys', async () => {
    const claims = { userId: 'attacker', role: 'admin', exp: nowSeconds() + 600 };
    for (const pem of [rsaKeys().publicKey, rsaKeys().publicKey.trim(), ecKeys().publicKey]) {
      const token = forgedHmacToken({ alg: 'HS256', typ: 'JWT' }, claims, pem);
      await assertUnauthorized(mixed, { token }, 'invalid_token', 'mixed');
    }
    // An RS256-labelled token whose "signature" is an HMAC with the key text is no better.
    const relabelled = forgedHmacToken({ alg: 'RS256', typ: 'JWT' }, claims, rsaKeys().publicKey);
    await assertUnauthorized(mixed, { token: relabelled }, 'invalid_token', 'RS256 label, HMAC signature');
    // And the other way round: an RS256 token is no use where only HS256 is configured.
    const rs = signToken({ userId: 'u1' }, rsaKeys().privateKey, 'RS256');
    await assertUnauthorized(hs, { token: rs }, 'invalid_token', 'RS256 against HS256 only');
  });

  test('expired tokens say token_expired', async () => {
    // Well past the default 5 s clock tolerance.
    const old = signToken({ userId: 'u1', exp: nowSeconds() - 3600 });
    await assertUnauthorized(hs, { token: old }, 'token_expired', 'an hour ago');
    await assertUnauthorized(hs, { token: old, via: 'query' }, 'token_expired', 'an hour ago, query');
    // With clock_tolerance 0s, a token two seconds past its exp is refused too.
    const recent = signToken({ userId: 'u1', iss: ISSUER, aud: AUDIENCE, exp: nowSeconds() - 2 });
    await assertUnauthorized(strict, { token: recent }, 'token_expired', 'two seconds ago, no tolerance');
    // An expired token with a wrong signature is refused for the signature, not reported as expired.
    const forged = signToken({ userId: 'u1', exp: nowSeconds() - 3600 }, SECRET_OTHER);
    await assertUnauthorized(hs, { token: forged }, 'invalid_token', 'expired and forged');
  });

  test('a token that is not yet valid (nbf in the future)', async () => {
    const token = signToken({ userId: 'u1', nbf: nowSeconds() + 3600 });
    await assertUnauthorized(hs, { token }, 'invalid_token', 'nbf in an hour');
    const soon = signToken({ userId: 'u1', iss: ISSUER, aud: AUDIENCE, nbf: nowSeconds() + 60 });
    await assertUnauthorized(strict, { token: soon }, 'invalid_token', 'nbf in a minute, no tolerance');
  });

  test('wrong issuer or wrong audience', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ userId: 'u1', iss: 'https://evil.example', aud: AUDIENCE }, 'wrong issuer'],
      [{ userId: 'u1', iss: ISSUER, aud: 'another-service' }, 'wrong audience'],
      [{ userId: 'u1', iss: `${ISSUER}.evil.example`, aud: AUDIENCE }, 'issuer with a suffix'],
      [{ userId: 'u1', iss: ISSUER, aud: ['another-service', 'billing'] }, 'audience list without ours'],
    ];
    for (const [claims, label] of cases) {
      await assertUnauthorized(strict, { token: signToken(claims) }, 'invalid_token', label);
    }
    // The right issuer and audience get in: the refusals above are about the claims, not the setup.
    const socket = await openSocket(strict.url, {
      token: signToken({ userId: 'u1', iss: ISSUER, aud: AUDIENCE }),
    });
    await socket.close();
  });

  test('a token without iss or aud where auth.jwt.issuer and audience are configured', async () => {
    await assertUnauthorized(
      strict,
      { token: signToken({ userId: 'u1', aud: AUDIENCE }) },
      'invalid_token',
      'no iss',
    );
    await assertUnauthorized(
      strict,
      { token: signToken({ userId: 'u1', iss: ISSUER }) },
      'invalid_token',
      'no aud',
    );
    await assertUnauthorized(strict, { token: signToken({ userId: 'u1' }) }, 'invalid_token', 'neither');
  });

  test('tokens without exp or without a user', async () => {
    const unlimited = forgedHmacToken(
      { alg: 'HS256', typ: 'JWT' },
      { userId: 'u1', role: 'admin' },
      SECRET_A,
    );
    await assertUnauthorized(hs, { token: unlimited }, 'invalid_token', 'no exp');
    for (const claims of [
      { email: 'a@example.com' },
      { userId: '' },
      { userId: { id: 1 } },
      { user_id: null },
    ]) {
      await assertUnauthorized(hs, { token: signToken(claims) }, 'invalid_token', JSON.stringify(claims));
    }
  });
});

describe('accepted upgrades', () => {
  test('login-service claims {userId, email}: the role falls back to viewer', async () => {
    const socket = await openSocket(hs.url, {
      token: signToken({ userId: 'alice', email: 'alice@example.com' }),
    });
    const client = [...hs.app.hub.clients].find((c) => c.principal.userId === 'alice');
    assert.equal(client?.principal.role, 'viewer');
    // The viewer role shows: orders are refused, market data is not.
    const refused = await socket.request(
      { action: 'subscribe', subscriptions: ['orders'] },
      'subscribed',
      'error',
    );
    assert.equal(refused.code, 'forbidden_topic');
    const ok = await socket.request(
      { action: 'subscribe', subscriptions: ['market_data'] },
      'subscribed',
      'error',
    );
    assert.deepEqual(ok.subscriptions, ['market_data']);
    await socket.close();
  });

  test('API-gateway claims {user_id, role} signed with the second secret', async () => {
    const token = signToken({ user_id: 'gw-7', role: 'trader' }, SECRET_B);
    const socket = await openSocket(hs.url, { token });
    const client = [...hs.app.hub.clients].find((c) => c.principal.userId === 'gw-7');
    assert.equal(client?.principal.role, 'trader');
    const reply = await socket.request(
      { action: 'subscribe', subscriptions: ['orders'] },
      'subscribed',
      'error',
    );
    assert.equal(reply.type, 'subscribed');
    assert.deepEqual(reply.subscriptions, ['orders']);
    await socket.close();
  });

  test('RS256 and ES256 tokens against a config with a secret and both public keys', async () => {
    const rs = signToken({ userId: 'rs-user', role: 'trader' }, rsaKeys().privateKey, 'RS256');
    const es = signToken({ userId: 'es-user' }, ecKeys().privateKey, 'ES256');
    const hsMixed = signToken({ userId: 'hs-user' });
    for (const token of [rs, es, hsMixed]) {
      const socket = await openSocket(mixed.url, { token });
      const pong = await socket.request({ action: 'ping' }, 'pong');
      assert.equal(pong.type, 'pong');
      await socket.close();
    }
    // A token signed by an RSA key the server does not hold.
    const otherRsa = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const foreign = signToken({ userId: 'rs-user' }, otherRsa.privateKey, 'RS256');
    await assertUnauthorized(mixed, { token: foreign }, 'invalid_token', 'RS256 by an unknown key');
  });

  test('RS256 tokens against an RS256-only config (public_key, no secret)', async () => {
    const running = rsaApp();
    const rs = signToken({ userId: 'rs-user', role: 'trader' }, rsaKeys().privateKey, 'RS256');
    const socket = await openSocket(running.url, { token: rs });
    assert.equal((await socket.request({ action: 'ping' }, 'pong')).type, 'pong');
    await socket.close();
    const es = signToken({ userId: 'es-user' }, ecKeys().privateKey, 'ES256');
    await assertUnauthorized(running, { token: es }, 'invalid_token', 'ES256 against RS256 only');
  });

  test('ES256 tokens against an ES256-only config (public_key, no secret)', async () => {
    const running = ecApp();
    const es = signToken({ userId: 'es-user' }, ecKeys().privateKey, 'ES256');
    const socket = await openSocket(running.url, { token: es });
    assert.equal((await socket.request({ action: 'ping' }, 'pong')).type, 'pong');
    await socket.close();
  });

  test('the token in Authorization: Bearer, in the bearer subprotocol and in ?token=', async () => {
    const token = signToken({ userId: 'carrier' });
    const header = await openSocket(hs.url, { token, via: 'header' });
    const subprotocol = await openSocket(hs.url, { token, via: 'subprotocol' });
    const query = await openSocket(hs.url, { token, via: 'query' });
    // A browser's WebSocket fails the handshake unless the server selects one of the offered protocols.
    assert.equal(subprotocol.ws.protocol, 'bearer');
    assert.equal(header.ws.protocol, '');
    for (const socket of [header, subprotocol, query]) {
      assert.equal((await socket.request({ action: 'ping' }, 'pong')).type, 'pong');
    }
    assert.equal(hs.app.hub.clientCount('carrier'), 3);
    await Promise.all([header.close(), subprotocol.close(), query.close()]);
  });
});
