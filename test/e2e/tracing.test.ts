import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { JsonObject } from '../../src/merge-patch.ts';
import { startTracing } from '../../src/tracing-sdk.ts';
import { collect } from '../helpers/child.ts';
import { OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';

/**
 * Tracing on, against a collector in this process (test/helpers/otlp-receiver.ts): the spans the hub makes (a poll,
 * a Redis message applied, a trading action from a WebSocket, a history write, an HTTP request) arrive with their
 * attributes and their parent/child links, and the gRPC calls inside a poll or an action are their children, with a
 * traceparent sent to the backend. The SDK starts before anything imports ioredis or @grpc/grpc-js, as src/server.ts
 * does: the app and the helpers that load those modules are imported afterwards, dynamically.
 */

const KIND_SERVER = 2;
const KIND_CLIENT = 3;
const STATUS_ERROR = 2;

let receiver: OtlpReceiver;
let app: FastifyInstance;
let url: string;
let closeAll: () => Promise<void>;
let grpcCalls: { method: string; metadata: Record<string, unknown[]> }[];
let redisUrl: string;
let orderExecutionAddress: string;
let publish: (channel: string, message: string) => Promise<unknown>;
let traderToken: string;
let viewerToken: string;
let openSocket: (path: string) => Promise<{
  request(message: unknown, ...types: string[]): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}>;

before(async () => {
  receiver = await OtlpReceiver.start();
  const tracing = { endpoint: receiver.endpoint, sample_ratio: 1, message_sample_ratio: 1 };
  const sdk = startTracing(tracing);
  assert.deepEqual(sdk.unpatched, [], 'nothing imported ioredis or @grpc/grpc-js before the SDK started');

  const { startApp, waitReady } = await import('../helpers/app.ts');
  const { GrpcBackend } = await import('../helpers/backends-grpc.ts');
  const { sourceConfig } = await import('../helpers/backends-poller.ts');
  const { TestRedis, freePort } = await import('../helpers/redis.ts');
  const { authOn, signToken } = await import('../helpers/tokens.ts');
  const { WatchedSocket } = await import('../helpers/client.ts');
  const { default: WebSocket } = await import('ws');

  const redis = await TestRedis.start();
  const publisher = redis.client();
  const orderExecution = await GrpcBackend.start({
    GetOrders: () => ({ orders: [] }),
    CreateOrder: (call) => ({
      order_id: 'ord-1',
      client_order_id: call.request.client_order_id,
      state: 'NEW',
      timestamp: 1_700_000_000,
      error_message: '',
    }),
  });
  const running = await startApp(redis.url, {
    tracing,
    auth: authOn(),
    actions: { enabled: true },
    backend_services: { order_execution: sourceConfig(orderExecution.address) },
    // Nothing listens there: every write fails at once, which is a history.flush span too.
    history: { database_url: `postgres://postgres@127.0.0.1:${await freePort()}/none` },
  });
  await waitReady(running.app);
  app = running.app;
  url = running.url;
  grpcCalls = orderExecution.calls as typeof grpcCalls;
  redisUrl = redis.url;
  orderExecutionAddress = orderExecution.address;
  publish = (channel, message) => publisher.publish(channel, message);
  traderToken = signToken({ userId: 'trader-1', role: 'trader' });
  viewerToken = signToken({ userId: 'viewer-1', role: 'viewer' });
  openSocket = async (path) => {
    const socket = new WatchedSocket(new WebSocket(`${url.replace('http', 'ws')}${path}`));
    await socket.opened;
    return socket;
  };
  closeAll = async () => {
    publisher.disconnect();
    await running.close();
    orderExecution.close();
    await redis.kill();
  };
});
after(async () => {
  await closeAll?.();
  await receiver?.close();
});

/** Resolves after a state write for which `predicate` holds (or at once, if `now` holds already). */
function written(
  predicate: (topic: string, key: string, value: JsonObject | undefined) => boolean,
  now = () => false,
): Promise<void> {
  if (now()) return Promise.resolve();
  return new Promise((resolve) => {
    const stop = app.state.observeWrites((topic, key, value) => {
      if (!predicate(topic, key, value as JsonObject | undefined)) return;
      stop();
      resolve();
    });
  });
}

/** The span of work that finished in this turn has ended by the next one: then export it. */
async function exported(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await app.tracing.flush();
}

const isRoot = (span: ReceivedSpan) => !span.parentSpanId;
const traceparentOf = (span: ReceivedSpan) => new RegExp(`^00-${span.traceId}-${span.spanId}-01$`);

describe('tracing on, exported to an OTLP/HTTP collector', () => {
  test('spans go to <endpoint>/v1/traces as JSON, from service dashboard-server', async () => {
    await exported();
    const span = await receiver.span(() => true);
    assert.equal(span.resource['service.name'], 'dashboard-server');
    assert.equal(typeof span.resource['service.version'], 'string');
    assert.ok(receiver.requests.length > 0);
    for (const request of receiver.requests) {
      assert.equal(request.path, '/v1/traces');
      assert.match(request.contentType ?? '', /^application\/json/);
    }
  });

  test('a poll is a span of its own, with the source, the breaker and the outcome; its gRPC call a child', async () => {
    await app.poller.sources.get('order_execution')!.poll();
    await exported();
    const poll = await receiver.span(
      (span) => span.name === 'poll order_execution' && receiver.children(span).length > 0,
    );
    assert.ok(isRoot(poll), 'a poll starts a trace');
    assert.equal(poll.attributes['dashboard.source'], 'order_execution');
    assert.equal(poll.attributes['dashboard.breaker'], 'closed');
    assert.equal(poll.attributes['dashboard.outcome'], 'success');
    const [call] = receiver.children(poll);
    assert.match(call.name, /OrderService\/GetOrders$/);
    assert.equal(call.kind, KIND_CLIENT);
    // The backend was told which span called it: it can continue the trace.
    const traceparents = grpcCalls.filter((c) => c.method === 'GetOrders').map((c) => c.metadata.traceparent);
    assert.ok(
      traceparents.some((value) => traceparentOf(call).test(String(value))),
      `${JSON.stringify(traceparents)} has ${call.spanId}`,
    );
  });

  test('a Redis message applied is a span with its channel and topic, starting its own trace', async () => {
    const applied = written((topic, key) => topic === 'market_data' && key === 'ETHUSDT');
    await publish('market_data:ETHUSDT', JSON.stringify({ symbol: 'ETHUSDT', last_price: 3000.5 }));
    await applied;
    await exported();
    const span = await receiver.span(
      (s) => s.attributes['messaging.destination.name'] === 'market_data:ETHUSDT',
    );
    assert.equal(span.name, 'ingest market_data');
    assert.ok(isRoot(span));
    assert.equal(span.attributes['messaging.system'], 'redis');
    assert.equal(span.attributes['dashboard.topic'], 'market_data');
    assert.notEqual(span.status.code, STATUS_ERROR);
  });

  test('a message refused by ingest is a failed span', async () => {
    // One subscriber connection delivers in order: once the valid message after it is applied, the bad one was seen.
    const applied = written((topic, key) => topic === 'market_data' && key === 'SOLUSDT');
    await publish('market_data:SOLUSDT', '{not json');
    await publish('market_data:SOLUSDT', JSON.stringify({ symbol: 'SOLUSDT', last_price: 150.25 }));
    await applied;
    await exported();
    const spans = receiver.spans.filter(
      (s) => s.attributes['messaging.destination.name'] === 'market_data:SOLUSDT',
    );
    assert.equal(spans.length, 2);
    assert.equal(spans[0].status.code, STATUS_ERROR);
    assert.notEqual(spans[1].status.code, STATUS_ERROR);
  });

  test('a trading action from a WebSocket is one trace from receipt to the answer, the gRPC call its child', async () => {
    const socket = await openSocket(`/ws?token=${traderToken}`);
    const result = await socket.request(
      {
        action: 'order.create',
        data: { symbol: 'BTCUSDT', side: 'BUY', type: 'LIMIT', quantity: 0.01, price: 60000 },
        request_id: 'r1',
      },
      'action_result',
    );
    assert.equal(result.outcome, 'accepted');
    await socket.close();
    await exported();
    const action = await receiver.span((span) => span.name === 'action order.create');
    assert.ok(isRoot(action), 'nothing of the WebSocket upgrade is its parent');
    assert.equal(action.attributes['dashboard.action'], 'order.create');
    assert.equal(action.attributes['dashboard.role'], 'trader');
    assert.equal(action.attributes['dashboard.outcome'], 'accepted');
    assert.equal(action.attributes['dashboard.order_id'], 'ord-1');
    assert.equal(action.attributes['dashboard.client_order_id'], result.client_order_id);
    assert.equal(action.attributes['dashboard.symbol'], 'BTCUSDT');
    const [call] = receiver.children(action);
    assert.match(call.name, /OrderService\/CreateOrder$/);
    assert.equal(call.kind, KIND_CLIENT);
    const sent = grpcCalls.find((c) => c.method === 'CreateOrder')!;
    assert.match(String(sent.metadata.traceparent), traceparentOf(call));
    // No user id and no token on the span.
    const values = Object.values(action.attributes).map(String);
    assert.ok(!values.some((value) => value.includes('trader-1') || value.includes(traderToken)));
  });

  test('an action refused by the hub is a span too, not a failed one', async () => {
    const socket = await openSocket(`/ws?token=${viewerToken}`);
    const result = await socket.request(
      { action: 'order.cancel', data: { orderId: 'ord-1' }, request_id: 'r2' },
      'action_result',
    );
    assert.equal(result.outcome, 'rejected');
    await socket.close();
    await exported();
    const action = await receiver.span((span) => span.name === 'action order.cancel');
    assert.equal(action.attributes['dashboard.outcome'], 'rejected');
    assert.match(String(action.attributes['dashboard.reason']), /role "viewer" may not act/);
    assert.notEqual(action.status.code, STATUS_ERROR);
    assert.deepEqual(receiver.children(action), [], 'nothing was sent to order-execution');
  });

  test('a history write is a span with the rows queued, the breaker and the outcome', async () => {
    // The first write (at start) fails: nothing listens on the database's port.
    await written(
      (topic, _key, value) => topic === 'system' && (value?.history as JsonObject)?.status === 'down',
      () => app.history.info.status === 'down',
    );
    await exported();
    const flush = await receiver.span((span) => span.name === 'history.flush');
    assert.ok(isRoot(flush));
    assert.equal(flush.attributes['dashboard.outcome'], 'failed');
    assert.equal(flush.attributes['dashboard.breaker'], 'closed');
    assert.equal(typeof flush.attributes['dashboard.rows'], 'number');
    assert.equal(flush.status.code, STATUS_ERROR);
    assert.match(flush.status.message ?? '', /ECONNREFUSED|connect/);
  });

  test('an HTTP request is a server span that parents its handler; no query string is recorded', async () => {
    const response = await fetch(`${url}/api/v1/state?topics=market_data&token=${viewerToken}`, {
      headers: { authorization: `Bearer ${viewerToken}` },
    });
    await response.arrayBuffer();
    await exported();
    const request = await receiver.span((span) => span.name === 'GET /api/v1/state');
    assert.ok(isRoot(request));
    assert.equal(request.kind, KIND_SERVER);
    assert.equal(request.attributes['http.route'], '/api/v1/state');
    assert.equal(request.attributes['url.path'], '/api/v1/state');
    assert.equal(request.attributes['http.response.status_code'], response.status);
    const children = receiver.children(request);
    assert.ok(
      children.some((span) => span.name.startsWith('handler')),
      `children: ${children.map((s) => s.name)}`,
    );
    for (const span of receiver.spans) {
      for (const value of Object.values(span.attributes)) assert.ok(!String(value).includes(viewerToken));
    }
  });

  test('probes, scrapes, /debug and the WebSocket upgrade have no request span', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/debug'])
      await (await fetch(`${url}${path}`)).arrayBuffer();
    await exported();
    const paths = receiver.spans.map((span) => span.attributes['url.path']);
    for (const path of ['/health', '/ready', '/metrics', '/debug', '/ws'])
      assert.ok(!paths.includes(path), `${path} in ${paths}`);
  });
});

describe('node src/server.ts with tracing.endpoint', () => {
  /**
   * Runs the service with `collector` as its endpoint until its first poll of order_execution has succeeded (its log
   * line: the poll's span has ended by the time a signal is handled), then stops it with SIGTERM.
   */
  async function runUntilPolled(collector: OtlpReceiver) {
    const config = join(mkdtempSync(join(tmpdir(), 'dashboard-tracing-')), 'config.yaml');
    writeFileSync(
      config,
      [
        'server: { host: 127.0.0.1, port: 0, log_level: info }',
        `redis: { url: "${redisUrl}" }`,
        // A fleet of its own: the in-process app of this file holds the default key's lease on the same Redis.
        `leader: { key: "tracing-child:${process.pid}:${Date.now()}" }`,
        'auth: { enabled: false }',
        `tracing: { endpoint: "${collector.endpoint}/" }`,
        `backend_services: { order_execution: { url: "${orderExecutionAddress}", interval: 1h } }`,
      ].join('\n'),
    );
    const server = fileURLToPath(new URL('../../src/server.ts', import.meta.url));
    const child = spawn(process.execPath, [server, '-c', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run = collect(child);
    let seen = '';
    const polled = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        seen += chunk;
        if (seen.includes('backend order_execution: polling succeeds')) resolve();
      });
      child.once('exit', () => reject(new Error(`exited before its first poll: ${seen}`)));
    });
    try {
      await polled;
    } finally {
      child.kill('SIGTERM');
    }
    return { ...(await run), pid: child.pid };
  }

  test('starts the SDK before the app loads: the gRPC calls of a poll are its children; SIGTERM exports', async () => {
    const collector = await OtlpReceiver.start();
    try {
      const { code, stdout, pid } = await runUntilPolled(collector);
      assert.equal(code, 0);
      assert.match(stdout, /"msg":"tracing: on"/);
      assert.doesNotMatch(stdout, /loaded before the SDK started/);
      // The shutdown exported what was left: the poll, with the gRPC call it made as its child.
      const poll = await collector.span((span) => span.name === 'poll order_execution');
      const [call] = collector.children(poll);
      assert.match(call?.name ?? '', /OrderService\/GetOrders$/);
      assert.equal(poll.resource['process.pid'], pid);
    } finally {
      await collector.close();
    }
  });

  test('a collector that refuses the spans is a warning in the log; the service stops cleanly all the same', async () => {
    const collector = await OtlpReceiver.start(400);
    try {
      const { code, stdout } = await runUntilPolled(collector);
      assert.ok(collector.requests.length > 0, 'the spans were offered at shutdown');
      assert.match(stdout, /"msg":"tracing: spans not exported at shutdown: [^"]+"/);
      assert.equal(code, 0);
    } finally {
      await collector.close();
    }
  });
});
