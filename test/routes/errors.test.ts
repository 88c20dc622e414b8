import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { type RunningApp, startApp } from '../helpers/app.ts';
import { connectClient } from '../helpers/client.ts';
import { freePort } from '../helpers/redis.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/**
 * Every HTTP 4xx/5xx answers `{"error": code, "message": …}` as JSON and nothing else (docs/operations.md),
 * whoever refused: a schema, a hook, a route, @fastify/rate-limit, the 404 handler, an unexpected error.
 * No Redis: the app serves without one, and /ready says why it is not ready.
 */

function assertShape(response: LightMyRequestResponse, status: number, code: string): { message: string } {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/json/);
  const body = response.json() as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message'], response.body);
  assert.equal(body.error, code);
  assert.equal(typeof body.message, 'string');
  assert.notEqual(body.message, '');
  return body as { message: string };
}

describe('one error shape', () => {
  let running: RunningApp;
  const log = new PassThrough();
  const lines: Record<string, unknown>[] = [];
  log.on('data', (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
  });

  before(async () => {
    running = await startApp(
      `redis://127.0.0.1:${await freePort()}`,
      {
        server: { log_level: 'info' },
        auth: authOn(),
        http: { rate_limit: { max: 3, window: '1m' } },
        websocket: { max_clients: 1 },
      },
      { logStream: log },
    );
  });
  after(() => running.close());

  // Each request from an address of its own unless a test says otherwise: the rate limit is per address.
  let requests = 0;
  const inject = (url: string, options: { headers?: Record<string, string>; remoteAddress?: string } = {}) =>
    running.app.inject({ method: 'GET', url, remoteAddress: `192.0.2.${++requests}`, ...options });
  const viewer = () => ({ authorization: `Bearer ${signToken({ userId: 'u1', role: 'viewer' })}` });

  test('400: a query parameter that fails its schema, and an unknown topic', async () => {
    const ws = assertShape(await inject('/ws?type=bogus', { headers: viewer() }), 400, 'invalid_request');
    assert.match(ws.message, /type/);
    assertShape(
      await inject(`/api/v1/state?topics=${'a'.repeat(3000)}`, { headers: viewer() }),
      400,
      'invalid_request',
    );
    const topic = assertShape(
      await inject('/api/v1/state?topics=nope', { headers: viewer() }),
      400,
      'unknown_topic',
    );
    assert.equal(topic.message, 'unknown topic "nope"');
  });

  test('401: no token, a bad token', async () => {
    assertShape(await inject('/api/v1/state'), 401, 'missing_token');
    assertShape(await inject('/ws', { headers: { authorization: 'Bearer x.y.z' } }), 401, 'invalid_token');
  });

  test('403: an operations route from elsewhere, a foreign origin, a topic the role may not read', async () => {
    assertShape(await inject('/debug', { remoteAddress: '203.0.113.9' }), 403, 'forbidden');
    assertShape(
      await inject('/ws', { headers: { ...viewer(), origin: 'https://evil.example' } }),
      403,
      'forbidden_origin',
    );
    assertShape(await inject('/api/v1/state?topics=orders', { headers: viewer() }), 403, 'forbidden_topic');
  });

  test('404: no such route (token masked), and GET /ws without an upgrade', async () => {
    const missing = assertShape(await inject('/nowhere?token=s3cret'), 404, 'not_found');
    assert.equal(missing.message, 'no route GET /nowhere?token=***');
    assertShape(await inject('/ws', { headers: viewer() }), 404, 'not_found');
  });

  test('429: past http.rate_limit, with Retry-After', async () => {
    const address = '198.51.100.7';
    const statuses: number[] = [];
    let last: LightMyRequestResponse | undefined;
    for (let i = 0; i < 4; i++) {
      last = await inject('/api/v1/state', { headers: viewer(), remoteAddress: address });
      statuses.push(last.statusCode);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    const body = assertShape(last!, 429, 'rate_limited');
    assert.match(body.message, /rate limit exceeded, retry in/);
    assert.ok(last!.headers['retry-after'], 'Retry-After is kept');
  });

  test('500: a generic message, no stack, the error logged', async () => {
    const { state } = running.app;
    const snapshot = state.snapshot;
    state.snapshot = () => {
      throw new Error('secret internals at /opt/x.ts:12');
    };
    try {
      const response = await inject('/api/v1/state', { headers: viewer(), remoteAddress: '198.51.100.8' });
      const body = assertShape(response, 500, 'internal_error');
      assert.equal(body.message, 'internal server error');
      assert.doesNotMatch(response.body, /secret|opt|stack/);
    } finally {
      state.snapshot = snapshot;
    }
    const logged = lines.find((line) => line.msg === 'request failed');
    assert.ok(logged, 'the error is logged');
    assert.equal(logged.level, 50);
    assert.match(JSON.stringify(logged.err), /secret internals/);
  });

  test('503: /ready (keeping status and reason), and a full server', async () => {
    const ready = await inject('/ready');
    assert.equal(ready.statusCode, 503);
    const body = ready.json() as Record<string, string>;
    assert.equal(body.error, 'not_ready');
    assert.match(body.message, /redis/);
    assert.equal(body.status, 'not_ready');
    assert.equal(body.reason, body.message);

    const client = await connectClient(running.url, { token: signToken({ userId: 'u2', role: 'viewer' }) });
    try {
      assertShape(await inject('/ws', { headers: viewer() }), 503, 'server_full');
    } finally {
      client.close();
    }
  });

  test('a request the HTTP parser refuses gets the shape too', async () => {
    const { port } = running.app.server.address() as { port: number };
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('NOT HTTP AT ALL\r\n\r\n');
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    await once(socket, 'close');
    assert.match(text, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(text, /Content-Type: application\/json/);
    assert.deepEqual(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)), {
      error: 'bad_request',
      message: 'bad request',
    });
  });
});
