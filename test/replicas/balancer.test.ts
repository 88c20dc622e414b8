import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import { NatsServer } from '../../scripts/lib/nats-server.ts';
import { GrpcBackend, grpcOrder } from '../helpers/backends-grpc.ts';
import { accountBody, HttpBackend, json } from '../helpers/backends-http.ts';
import { TestRedis } from '../helpers/redis.ts';
import {
  Fleet,
  type HubReplica,
  polledBackends,
  RoamingClient,
  readyStatus,
  request,
  viewMatchesState,
  waitFor,
} from '../helpers/replicas.ts';

/**
 * Three hub processes on one Redis behind HAProxy running ops/haproxy/haproxy.cfg as written (docs/replicas.md):
 * clients through the balancer spread over the replicas and all see the same data; a replica stopped with SIGTERM
 * closes its clients with 1001, HAProxy stops sending it clients (and retries an upgrade it refuses on another
 * replica), and the clients reconnect through the balancer to a live replica, whose snapshot they go on from.
 */

const TOPICS = ['market_data', 'account', 'positions', 'orders', 'fills'];
const CLIENTS = 6;

// Top-level hooks and tests, not a describe: under `npm test` each hook and each test has its own
// --test-timeout, where a describe has one for all of them (starting the processes can take 20 s on a busy machine).
let redis: TestRedis;
let publisher: Redis;
let nats: NatsServer;
let natsPublisher: NatsConnection;
let http: HttpBackend;
let grpc: GrpcBackend;
let fleet: Fleet;
const clients: RoamingClient[] = [];

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  nats = await NatsServer.start();
  natsPublisher = await nats.client();
  // The same answers to every replica: whichever polls (the leader, or each one), the data is the same.
  http = await HttpBackend.start({ '/api/account': json(accountBody()) });
  grpc = await GrpcBackend.start({
    GetOrders: () => ({
      orders: [grpcOrder({ order_id: 'ord-1' }), grpcOrder({ order_id: 'ord-2', side: 'SELL' })],
    }),
  });
  fleet = await Fleet.start({
    redisUrl: redis.url,
    leaderKey: 'replicas-test:balancer',
    config: (_index, apiKey) => ({
      // Every replica subscribes to NATS itself, as to Redis: /ready waits for both.
      nats: { url: nats.url },
      backend_services: polledBackends(http.url, grpc.address, apiKey, '500ms'),
    }),
  });
});

after(async () => {
  for (const client of clients) client.stop();
  await fleet?.stop();
  grpc?.close();
  await http?.close();
  publisher?.disconnect();
  await natsPublisher?.close();
  await nats?.kill();
  await redis?.kill();
});

/** The replica each client's current connection is on, by the epoch of its snapshot. */
async function placement(): Promise<Map<RoamingClient, HubReplica>> {
  const byEpoch = await fleet.byEpoch();
  return new Map(
    clients.map((client) => {
      const hub = byEpoch.get(client.session.epoch);
      assert.ok(hub, `epoch ${client.session.epoch} is no live replica's`);
      return [client, hub];
    }),
  );
}

test('clients through the balancer land on every replica (leastconn) and all receive the same data', async () => {
  // One after another, so leastconn sees each connection before the next: two per replica.
  for (let i = 0; i < CLIENTS; i++) clients.push(await RoamingClient.connect(fleet.balancer.url, TOPICS));

  const epochs = new Set(clients.map((client) => client.session.epoch));
  assert.equal(epochs.size, 3, 'each replica has its own epoch, and each answered two clients');
  const where = await placement();
  for (const hub of fleet.hubs) {
    assert.equal([...where.values()].filter((h) => h === hub).length, 2, `clients on ${hub.name}`);
    assert.equal((await hub.debug()).clients, 2, `${hub.name} /debug clients`);
  }

  // Redis: every replica subscribes; each client receives the tick through its own replica.
  await publisher.publish(
    'market_data:BTCUSDT',
    JSON.stringify({ last_price: '64000.5', bid_price: 64000, ask_price: 64001 }),
  );
  // NATS: likewise, a fill.
  natsPublisher.publish(
    'trading.fills',
    JSON.stringify({
      fill_id: 'fill-1',
      order_id: 'ord-1',
      symbol: 'BTCUSDT',
      side: 'BUY',
      price: '64000',
      quantity: '0.1',
      timestamp: 1_714_564_801_000,
    }),
  );
  await natsPublisher.flush();
  // Polled: the account (HTTP) and the orders (gRPC), on every replica, whoever polled them.
  await Promise.all(
    clients.map((client) =>
      waitFor(
        () => {
          const view = client.view as Record<string, Record<string, Record<string, unknown>>>;
          return (
            view.market_data?.BTCUSDT?.last_price === 64000.5 &&
            (view.fills?.BTCUSDT as unknown as Record<string, unknown>[] | undefined)?.[0]?.fill_id ===
              'fill-1' &&
            view.account?.total_balance !== undefined &&
            Object.keys(view.orders ?? {}).length === 2 &&
            Object.keys(view.positions ?? {}).length === 2
          );
        },
        { message: 'every client holds the tick (Redis), the fill (NATS) and the polled sections' },
      ),
    ),
  );
  const first = clients[0].view;
  for (const client of clients) assert.deepEqual(client.view, first, 'every client holds the same view');
  for (const [client, hub] of where) await viewMatchesState(client, hub, TOPICS);

  // The balancer serves the public routes and refuses the per-replica operations routes.
  const [debug, state] = await Promise.all([
    request(`${fleet.balancer.url}/debug`),
    request(`${fleet.balancer.url}/api/v1/state?topics=account`),
  ]);
  await Promise.all([debug.arrayBuffer(), state.arrayBuffer()]);
  assert.equal(debug.status, 403);
  assert.equal(state.status, 200);
});

test('SIGTERM: the replica’s clients get 1001, reconnect through HAProxy to a live replica, and go on from its snapshot', async () => {
  const where = await placement();
  const draining = fleet.hubs[2];
  const leaving = clients.filter((client) => where.get(client) === draining);
  const staying = clients.filter((client) => where.get(client) !== draining);
  assert.equal(leaving.length, 2);
  const sessionsBefore = new Map(clients.map((client) => [client, client.sessions.length]));
  const oldEpoch = leaving[0].session.epoch;

  const signalledAt = Date.now();
  draining.signal('SIGTERM');
  const closes = await Promise.all(leaving.map((client) => client.closed()));
  for (const close of closes) {
    assert.equal(close.code, 1001);
    assert.equal(close.reason, 'server shutting down');
  }
  const moved = await Promise.all(
    leaving.map((client) => client.nextSession(sessionsBefore.get(client)!, 10_000)),
  );
  const byEpoch = await fleet.byEpoch();
  for (const [i, session] of moved.entries()) {
    assert.notEqual(session.epoch, oldEpoch, 'a snapshot from another replica');
    const hub = byEpoch.get(session.epoch);
    assert.ok(hub && hub !== draining, `landed on a live replica (epoch ${session.epoch})`);
    assert.equal(session.snapshot.type, 'state_update');
    await viewMatchesState(leaving[i], hub, TOPICS);
  }
  // HAProxy's check sees /ready 503 (then a closed port) and takes the replica out: within inter (1 s) and a check.
  await waitFor(async () => (await fleet.balancer.servers()).hub3.status.startsWith('DOWN'), {
    message: 'HAProxy marks the stopped replica DOWN',
    timeoutMs: 5000,
  });
  const markedDown = Date.now() - signalledAt;
  assert.ok(markedDown < 3000, `marked down ${markedDown} ms after SIGTERM`);
  const exit = await draining.exited;
  assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}: ${draining.output().slice(-2000)}`);

  // The other clients never noticed; a new tick reaches every client, the moved ones included.
  for (const client of staying) assert.equal(client.sessions.length, sessionsBefore.get(client));
  await publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: '64100' }));
  await Promise.all(
    clients.map((client) =>
      waitFor(
        () =>
          (client.view as Record<string, Record<string, Record<string, unknown>>>).market_data?.BTCUSDT
            ?.last_price === 64100,
        { message: 'the next tick reaches every client' },
      ),
    ),
  );
});

test('an upgrade refused by a draining replica (503 shutting_down) is retried by HAProxy on another replica', async () => {
  const draining = fleet.hubs[1];
  const live = fleet.hubs[0];
  // Without its health check, HAProxy keeps the replica UP however /ready answers: every new connection that
  // leastconn gives it meets the drain's 503, and only the retry (retry-on 503, redispatch) saves it.
  assert.match(await fleet.balancer.command('disable health hubs/hub2'), /^\s*$/);
  // A client that stops reading never completes the close handshake: the drain lasts until it is terminated.
  const stuck = new WebSocket(`ws://127.0.0.1:${draining.port}/ws?type=tui`);
  await new Promise((resolve, reject) => stuck.once('open', resolve).once('error', reject));
  stuck.on('error', () => {});
  (stuck as unknown as { _socket: { pause(): void } })._socket.pause();
  const before = await fleet.balancer.servers();

  draining.signal('SIGTERM');
  await waitFor(async () => (await readyStatus(draining.url)) === 503, {
    message: 'the replica drains',
  });
  assert.equal((await fleet.balancer.servers()).hub2.status, 'no check', 'HAProxy still counts it in');

  const liveEpoch = (await live.debug()).epoch;
  const fresh: RoamingClient[] = [];
  try {
    // RoamingClient.connect makes one attempt (it retries only once connected): each upgrade succeeded as sent.
    for (let i = 0; i < 3; i++) fresh.push(await RoamingClient.connect(fleet.balancer.url, ['market_data']));
    for (const client of fresh) assert.equal(client.session.epoch, liveEpoch, 'answered by the live replica');
  } finally {
    for (const client of fresh) client.stop();
  }
  // HAProxy counts a response it retried as a retry and a redispatch of the server that gave it, not as a 5xx. (The
  // replica's own clients, closed with 1001, reconnect meanwhile and may be among them: leastconn offers the draining
  // replica, which has no connection left, to every upgrade.)
  const after = await fleet.balancer.servers();
  const redispatched = Number(after.hub2.wredis) - Number(before.hub2.wredis);
  assert.ok(redispatched >= fresh.length, `HAProxy redispatched the upgrades hub2 refused (${redispatched})`);
  const refusals = draining
    .logLines()
    .filter((line) => (line.res as { statusCode?: number } | undefined)?.statusCode === 503);
  assert.ok(refusals.length >= fresh.length, `hub2 refused them with 503 (${refusals.length})`);
  stuck.terminate();
  await draining.exited;
});
