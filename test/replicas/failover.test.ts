import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import type { JsonObject } from '../../src/client.ts';
import { GrpcBackend, type GrpcCall, grpcOrder } from '../helpers/backends-grpc.ts';
import { accountBody, HttpBackend, type HttpRequestRecord } from '../helpers/backends-http.ts';
import { TestRedis } from '../helpers/redis.ts';
import {
  Fleet,
  grpcPoller,
  type HubReplica,
  httpPoller,
  polledBackends,
  RoamingClient,
  viewMatchesState,
  waitFor,
} from '../helpers/replicas.ts';

/**
 * Leadership across three hub processes on one Redis behind HAProxy (docs/replicas.md): only the lease holder polls
 * the backends, the others apply what it relays; killed with SIGKILL, it is replaced within the lease, the new leader
 * polls at once, no polled section stays unrefreshed for longer than that, and its clients reconnect through the
 * balancer; stopped with SIGTERM, it gives the lease up and another replica takes over without waiting for it.
 */

const LEASE = 1000;
const INTERVAL = 500;
/** A new leader starts its sources after a random delay up to a second, at most an interval (PolledSource.pollSoon). */
const TAKEOVER_JITTER = Math.min(1000, INTERVAL);
/**
 * What a loaded 2-vCPU machine running three hubs, HAProxy and Redis adds on top: timers late by tens of ms, a
 * poll's round trip, the relay's hop through Redis and a client's 100 ms tick.
 */
const MARGIN = 500;
const TOPICS = ['market_data', 'account', 'positions', 'orders'];

interface Poll {
  at: number;
  key: string | undefined;
}

// Top-level hooks and tests, not a describe: under `npm test` each hook and each test has its own
// --test-timeout, where a describe has one for all of them (starting the processes can take 20 s on a busy machine).
let redis: TestRedis;
let publisher: Redis;
let http: HttpBackend;
let grpc: GrpcBackend;
let fleet: Fleet;
const clients: RoamingClient[] = [];
/** Every poll the stand-ins answered, by the api_key of the replica that sent it. */
const accountPolls: Poll[] = [];
const orderPolls: Poll[] = [];
/** While false the account changes with every poll (so its updates show each poll on the clients). */
let frozen = false;
let lastAccount: Record<string, unknown> = accountBody();

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  http = await HttpBackend.start({
    '/api/account': (request: HttpRequestRecord) => {
      accountPolls.push({ at: Date.now(), key: httpPoller(request) });
      if (!frozen) {
        lastAccount = accountBody({
          pnl: { realized_pnl: String(accountPolls.length), unrealized_pnl: '-3.25' },
          timestamp: new Date().toISOString(),
        });
      }
      return { body: lastAccount };
    },
  });
  grpc = await GrpcBackend.start({
    GetOrders: (call: GrpcCall) => {
      orderPolls.push({ at: Date.now(), key: grpcPoller(call) });
      return { orders: [grpcOrder({ order_id: 'ord-1' })] };
    },
  });
  fleet = await Fleet.start({
    redisUrl: redis.url,
    leaderKey: 'replicas-test:failover',
    lease: `${LEASE}ms`,
    config: (_index, apiKey) => ({
      backend_services: polledBackends(http.url, grpc.address, apiKey, `${INTERVAL}ms`),
    }),
  });
});

after(async () => {
  for (const client of clients) client.stop();
  await fleet?.stop();
  grpc?.close();
  await http?.close();
  publisher?.disconnect();
  await redis?.kill();
});

const leaderOf = (debug: JsonObject) => debug.leader as Record<string, unknown>;

/** Resolves with the leader once every live replica names the same holder and exactly that one leads. */
async function settledLeader(): Promise<HubReplica> {
  return waitFor(
    async () => {
      const live = fleet.hubs.filter((hub) => hub.alive);
      const debugs = await Promise.all(live.map((hub) => hub.debug().catch(() => undefined)));
      if (debugs.some((debug) => debug === undefined)) return false;
      const leaders = live.filter((_hub, i) => leaderOf(debugs[i]!).is_leader === true);
      if (leaders.length !== 1) return false;
      const self = leaderOf(debugs[live.indexOf(leaders[0])]!).self;
      return debugs.every((debug) => leaderOf(debug!).holder === self) && leaders[0];
    },
    { message: 'one leader, named by every replica', timeoutMs: 10_000 },
  );
}

/** When `hub` logged that it took the lease (its clock is this machine's). */
function tookLeaseAt(hub: HubReplica, after: number): number | undefined {
  const line = hub
    .logLines()
    .find(
      (entry) =>
        String(entry.msg).startsWith('leader: this replica took the lease') &&
        (entry.time as number) >= after,
    );
  return line?.time as number | undefined;
}

test('only the lease holder polls the backends; every replica serves what it polled', async () => {
  const leader = await settledLeader();
  // Several polls of each source, all from the leader, since the very first one.
  await waitFor(() => accountPolls.length >= 4 && orderPolls.length >= 4, { message: 'polls' });
  assert.deepEqual(new Set(accountPolls.map((poll) => poll.key)), new Set([leader.apiKey]), 'account polls');
  assert.deepEqual(new Set(orderPolls.map((poll) => poll.key)), new Set([leader.apiKey]), 'order polls');

  for (const hub of fleet.hubs) {
    const metric = /^dashboard_leader (\d+)/m.exec(await hub.metrics())?.[1];
    assert.equal(metric, hub === leader ? '1' : '0', `${hub.name} dashboard_leader`);
    const debug = await hub.debug();
    assert.equal(debug.pid, hub.pid, `${hub.name} /debug pid`);
    // The system topic says who leads, on every replica.
    const system = (await hub.state(['system'])).data.system as JsonObject;
    const self = leaderOf(await leader.debug()).self;
    assert.equal((system.leader as JsonObject).holder, self, `${hub.name} system.leader.holder`);
    assert.equal((system.leader as JsonObject).is_leader, hub === leader);
  }
  // The leader relays its polls; the others apply them.
  await waitFor(
    async () => {
      const relays = await Promise.all(
        fleet.hubs.map(async (hub) => ({ hub, relay: leaderOf(await hub.debug()).relay as JsonObject })),
      );
      return relays.every(({ hub, relay }) =>
        hub === leader
          ? (relay.published as number) > 0
          : ((relay.received as JsonObject).applied as number) > 0,
      );
    },
    { message: '/debug leader.relay: published by the leader, applied by the others' },
  );

  // Clients on every replica hold the polled sections (relayed to the two that do not poll).
  for (let i = 0; i < 6; i++) clients.push(await RoamingClient.connect(fleet.balancer.url, TOPICS));
  assert.equal(new Set(clients.map((client) => client.session.epoch)).size, 3, 'clients on every replica');
  await Promise.all(
    clients.map((client) =>
      waitFor(
        () =>
          (client.view.account as JsonObject | undefined)?.total_balance !== undefined &&
          Object.keys((client.view.orders as JsonObject | undefined) ?? {}).length === 1,
        { message: 'the polled sections on every client' },
      ),
    ),
  );
});

test('kill -9 the leader: another takes over within the lease, polls at once, no section goes stale for longer, its clients move', async (t) => {
  const leader = await settledLeader();
  const survivors = fleet.hubs.filter((hub) => hub.alive && hub !== leader);
  const takeoversBefore = leaderOf(await survivors[0].debug()).takeovers as number;
  const byEpoch = await fleet.byEpoch();
  const orphans = clients.filter((client) => byEpoch.get(client.session.epoch) === leader);
  const others = clients.filter((client) => !orphans.includes(client));
  assert.equal(orphans.length, 2);
  const sessionsBefore = new Map(orphans.map((client) => [client, client.sessions.length]));

  // When the account last changed on each client of a surviving replica: the gaps between its refreshes.
  const refreshes = new Map<RoamingClient, number[]>();
  for (const client of others) {
    const times: number[] = [];
    refreshes.set(client, times);
    let last = JSON.stringify(client.view.account);
    client.onUpdate(() => {
      const now = JSON.stringify(client.view.account);
      if (now !== last) times.push(Date.now());
      last = now;
    });
  }
  // Steady state first: each client has seen the account refreshed by the old leader.
  await waitFor(() => [...refreshes.values()].every((times) => times.length >= 1), {
    message: 'the account refreshes on every client',
  });

  const killedAt = Date.now();
  leader.signal('SIGKILL');
  await leader.exited;

  // The first poll from another replica, of each source.
  const firstAfter = (polls: Poll[]) =>
    waitFor(() => polls.find((poll) => poll.at >= killedAt && poll.key !== leader.apiKey), {
      message: 'a poll from another replica',
      timeoutMs: 10_000,
    });
  const [account, orders] = await Promise.all([firstAfter(accountPolls), firstAfter(orderPolls)]);
  const next = await settledLeader();
  assert.notEqual(next, leader);
  const takenAt = tookLeaseAt(next, killedAt);
  assert.ok(takenAt, `${next.name} logged that it took the lease`);
  const timings = {
    takeover: takenAt - killedAt,
    account: account.at - killedAt,
    orders: orders.at - killedAt,
  };
  // The lease was renewed at most a lease before the kill; the others try again as it runs out.
  assert.ok(timings.takeover <= LEASE + MARGIN, `took over ${timings.takeover} ms after the kill`);
  for (const poll of [account, orders]) {
    assert.equal(poll.key, next.apiKey, 'polled by the new leader');
    assert.ok(
      poll.at - killedAt <= LEASE + TAKEOVER_JITTER + MARGIN,
      `first poll ${poll.at - killedAt} ms after the kill (${JSON.stringify(timings)})`,
    );
  }
  // From then on, only the new leader polls.
  await waitFor(() => accountPolls.filter((poll) => poll.at > account.at).length >= 2, {
    message: 'more polls',
  });
  assert.deepEqual(
    new Set(accountPolls.filter((poll) => poll.at >= account.at).map((poll) => poll.key)),
    new Set([next.apiKey]),
  );

  // Clients of the surviving replicas: the account kept being refreshed, with one gap around the failover.
  await waitFor(() => [...refreshes.values()].every((times) => times.some((time) => time > account.at)), {
    message: 'the new leader’s account reaches the clients of every surviving replica',
  });
  const worstGaps: number[] = [];
  for (const [client, times] of refreshes) {
    const gaps = times.slice(1).map((time, i) => time - times[i]);
    const worst = Math.max(...gaps);
    worstGaps.push(worst);
    // The last refresh before the kill was at most an interval before it; the next one comes with the new
    // leader's first poll, within the lease and an interval of the kill.
    assert.ok(
      worst <= INTERVAL + LEASE + TAKEOVER_JITTER + MARGIN,
      `the account went ${worst} ms without a refresh on a client of ${byEpoch.get(client.session.epoch)?.name} (${JSON.stringify(timings)})`,
    );
  }

  t.diagnostic(`after the kill (ms): ${JSON.stringify({ ...timings, worst_gap: Math.max(...worstGaps) })}`);

  // The fleet counted one more takeover; the system topic names the new leader on both survivors.
  const self = leaderOf(await next.debug()).self;
  for (const hub of survivors) {
    assert.equal(leaderOf(await hub.debug()).takeovers, takeoversBefore + 1, `${hub.name} takeovers`);
    const system = (await hub.state(['system'])).data.system as JsonObject;
    assert.equal((system.leader as JsonObject).holder, self);
  }

  // The dead replica's clients: the TCP connection dropped (no close frame), they reconnected through HAProxy to a
  // live replica and went on from its snapshot.
  frozen = true;
  const now = await fleet.byEpoch();
  for (const client of orphans) {
    const session = await client.nextSession(sessionsBefore.get(client)!, 10_000);
    assert.equal(client.sessions[sessionsBefore.get(client)! - 1].closed?.code, 1006);
    const hub = now.get(session.epoch);
    assert.ok(hub && hub !== leader, `reconnected to a live replica (epoch ${session.epoch})`);
    await viewMatchesState(client, hub, TOPICS);
  }
  // And every client, moved or not, holds the same account: the new leader's polls reach all of them.
  await Promise.all(
    clients.map(async (client) => viewMatchesState(client, now.get(client.session.epoch)!, TOPICS)),
  );
});

test('SIGTERM the leader: it gives the lease up and another replica takes over at once', async (t) => {
  frozen = false;
  const leader = await settledLeader();
  const survivor = fleet.hubs.find((hub) => hub.alive && hub !== leader)!;
  const takeoversBefore = leaderOf(await survivor.debug()).takeovers as number;
  const signalledAt = Date.now();
  leader.signal('SIGTERM');
  const exit = await leader.exited;
  const exitedAt = Date.now();
  assert.equal(exit.code, 0);

  const next = await settledLeader();
  assert.equal(next, survivor);
  const takenAt = tookLeaseAt(next, signalledAt);
  assert.ok(takenAt, `${next.name} logged that it took the lease`);
  // Waiting for the lease to expire would take at least two thirds of it after the exit (it was renewed every
  // third while the replica drained); the released lease is taken as the old leader lets it go.
  assert.ok(
    takenAt - exitedAt < LEASE / 3,
    `took over ${takenAt - exitedAt} ms after the exit (${takenAt - signalledAt} ms after SIGTERM)`,
  );
  assert.equal(leaderOf(await next.debug()).takeovers, takeoversBefore + 1);
  t.diagnostic(`after SIGTERM (ms): exit ${exitedAt - signalledAt}, takeover ${takenAt - signalledAt}`);
  const poll = await waitFor(() => accountPolls.find((p) => p.at >= signalledAt && p.key === next.apiKey), {
    message: 'the new leader polls',
  });
  assert.ok(
    poll.at - signalledAt <= TAKEOVER_JITTER + MARGIN + (exitedAt - signalledAt),
    `first poll ${poll.at - signalledAt} ms after SIGTERM`,
  );
});
