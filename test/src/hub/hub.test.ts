import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Format } from '../../../src/codec.ts';
import { Hub, type HubOptions } from '../../../src/hub/hub.ts';
import type { ClientType, HubClient } from '../../../src/hub/session.ts';
import type { Json } from '../../../src/merge-patch.ts';
import { SINGLE, StateStore } from '../../../src/state.ts';
import { buildFilter } from '../../../src/topics.ts';
import { FakeSocket, hubOptions } from './fakes.ts';

/**
 * The Hub against StateStore and fake sockets (the ClientSocket interface): what a tick, a group or one socket
 * does when something throws, and how snapshots wait for a full socket buffer. The e2e tests cover real sockets.
 */

interface LogLine {
  level: 'warn' | 'error';
  object: Record<string, unknown>;
  message: string;
}

function setup(options: Partial<HubOptions> = {}) {
  const state = new StateStore();
  const lines: LogLine[] = [];
  let time = 1_000_000;
  const hub = new Hub(state, {
    ...hubOptions(),
    now: () => time,
    logger: {
      warn: (object, message) => lines.push({ level: 'warn', object: object as never, message }),
      error: (object, message) => lines.push({ level: 'error', object: object as never, message }),
    },
    ...options,
  });
  async function client(subscriptions: string[], type: ClientType = 'tui', format: Format = 'json') {
    const socket = new FakeSocket();
    const connected = hub.connect(socket, type, format);
    send(connected, { action: 'subscribe', subscriptions });
    return { socket, client: connected };
  }
  function send(connected: HubClient, message: object): void {
    hub.receive(connected, Buffer.from(JSON.stringify(message)), false);
  }
  return {
    state,
    hub,
    lines,
    client,
    send,
    advance(ms: number) {
      time += ms;
    },
  };
}

/** An array nested `depth` levels deep: JSON.stringify runs out of stack on it. */
function deepArray(depth: number): Json {
  let value: Json = [];
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

describe('Hub: an error in a tick', () => {
  test('a value that cannot be encoded closes its group with 1011; the tick and the other groups go on', async () => {
    const { state, hub, lines, client } = setup();
    const poisoned = await client(['market_data:EVIL']);
    const healthy = await client(['market_data:BTCUSDT']);
    const web = await client(['market_data:BTCUSDT'], 'web');
    state.set('market_data', 'EVIL', { symbol: 'EVIL', x: deepArray(5000) });
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 1 });

    assert.doesNotThrow(() => hub.tick('tui'));
    assert.deepEqual(poisoned.socket.closedWith, { code: 1011, reason: 'internal_error' });
    assert.equal(hub.clients.has(poisoned.client), false);
    const [diff] = healthy.socket.ofType('diff_update');
    assert.deepEqual(diff.changes, { market_data: { BTCUSDT: { symbol: 'BTCUSDT', last_price: 1 } } });
    assert.equal(hub.stats.errors.broadcast, 1);
    assert.equal(hub.stats.disconnects['1011'], 1);
    const logged = lines.filter((line) => line.message === 'hub broadcast failed');
    assert.equal(logged.length, 1);
    assert.equal(logged[0].level, 'error');
    assert.equal(logged[0].object.stage, 'broadcast');

    // The other type's tick, and the next ticks, still run.
    hub.tick('web');
    assert.equal(web.socket.ofType('diff_update').length, 1);
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 2 });
    hub.tick('tui');
    assert.equal(healthy.socket.ofType('diff_update').length, 2);
  });

  test('a BigInt, and a poisoned group failing at every tick, are counted each time and logged once per second', async () => {
    const { state, hub, lines, client, advance } = setup();
    const healthy = await client(['market_data']);
    const poisonAccount = async () => {
      state.set('account', SINGLE, { total_balance: 1 });
      const poisoned = await client(['account']);
      state.set('account', SINGLE, { total_balance: 10n as unknown as Json });
      hub.tick('tui');
      assert.equal(poisoned.socket.closedWith?.code, 1011);
    };
    for (let i = 0; i < 3; i++) await poisonAccount();
    assert.equal(hub.stats.errors.broadcast, 3);
    assert.equal(lines.filter((line) => line.message === 'hub broadcast failed').length, 1);
    advance(1001);
    await poisonAccount();
    const logged = lines.filter((line) => line.message === 'hub broadcast failed');
    assert.equal(logged.length, 2);
    assert.equal(logged[1].object.suppressed, 2);
    assert.equal(hub.clients.has(healthy.client), true);
  });

  test('a snapshot that cannot be encoded closes that subscriber with 1011 and is counted; others are served', async () => {
    const { state, hub, lines, client } = setup();
    const healthy = await client(['market_data:BTCUSDT']);
    state.set('market_data', 'EVIL', { symbol: 'EVIL', x: deepArray(5000) });
    const subscriber = await client(['market_data']);
    assert.deepEqual(subscriber.socket.closedWith, { code: 1011, reason: 'internal_error' });
    assert.equal(hub.stats.errors.message, 1);
    assert.equal(lines.filter((line) => line.object.stage === 'message').length, 1);
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 3 });
    hub.tick('tui');
    assert.equal(healthy.socket.ofType('diff_update').length, 1);
  });

  test('a socket whose send throws is dropped; the rest of its group gets the update', async () => {
    const { state, hub, client } = setup();
    const broken = await client(['market_data']);
    const others = [await client(['market_data']), await client(['market_data'])];
    broken.socket.failSend = new Error('EPIPE');
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 4 });
    hub.tick('tui');
    assert.equal(broken.socket.terminated, true);
    assert.equal(hub.clients.has(broken.client), false);
    for (const other of others) assert.equal(other.socket.ofType('diff_update').length, 1);
    assert.equal(hub.stats.errors.send, 1);
  });

  test('a heartbeat that throws for one socket still pings the others', async () => {
    const { hub, client, advance } = setup({ pingInterval: 1000 });
    const broken = await client(['system']);
    const other = await client(['system']);
    broken.socket.failPing = new Error('not open');
    advance(1000);
    assert.doesNotThrow(() => hub.heartbeat());
    assert.equal(other.socket.pings, 1);
    assert.equal(hub.stats.errors.heartbeat, 1);
  });
});

describe('Hub: snapshots and a full socket buffer', () => {
  test('a resync while over websocket.max_buffered is held back, once, and sent when the buffer drains', async () => {
    const { state, hub, client, send } = setup();
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 1 });
    const { socket, client: stalled } = await client(['market_data']);
    assert.equal(socket.ofType('state_update').length, 1);
    socket.bufferedAmount = 64 * 1024 + 1;
    for (let i = 0; i < 20; i++) send(stalled, { action: 'resync' });
    assert.equal(socket.ofType('state_update').length, 1, 'nothing more while the buffer is full');
    assert.equal(hub.stats.deferredSnapshots, 1, 'one snapshot pending, however many resyncs');

    const frames = socket.sent.length;
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 2 });
    hub.tick('tui');
    assert.equal(socket.sent.length, frames, 'no diff and no snapshot while still full');

    socket.bufferedAmount = 0;
    state.set('market_data', 'ETHUSDT', { symbol: 'ETHUSDT', last_price: 3 });
    hub.tick('tui');
    const snapshots = socket.ofType('state_update');
    assert.equal(snapshots.length, 2, 'one snapshot once drained');
    assert.equal(snapshots[1].sequence, state.sequence);
    assert.deepEqual(
      snapshots[1].data,
      JSON.parse(JSON.stringify(state.snapshot(buildFilter(['market_data'])))),
    );
    assert.equal(socket.ofType('diff_update').length, 0, 'the snapshot replaces the diff');

    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: 5 });
    hub.tick('tui');
    const [diff] = socket.ofType('diff_update');
    assert.equal(diff.base_sequence, snapshots[1].sequence, 'diffs continue from the snapshot');
  });

  test('a subscribe while over the limit replies at once and sends its snapshot when drained', async () => {
    const { state, hub, client, send } = setup();
    state.set('orders', 'o1', { order_id: 'o1', state: 'NEW' });
    const { socket, client: stalled } = await client(['market_data']);
    socket.bufferedAmount = 1 << 20;
    send(stalled, { action: 'subscribe', subscriptions: ['orders'] });
    assert.equal(socket.ofType('subscribed').length, 2);
    assert.equal(socket.ofType('state_update').length, 1);
    socket.bufferedAmount = 0;
    hub.tick('tui');
    const snapshots = socket.ofType('state_update');
    assert.equal(snapshots.length, 2);
    assert.deepEqual((snapshots[1].data as Record<string, unknown>).orders, {
      o1: { order_id: 'o1', state: 'NEW' },
    });
  });

  test('unsubscribing everything drops a pending snapshot', async () => {
    const { hub, client, send } = setup();
    const { socket, client: stalled } = await client(['market_data']);
    socket.bufferedAmount = 1 << 20;
    send(stalled, { action: 'resync' });
    send(stalled, { action: 'unsubscribe', subscriptions: ['market_data'] });
    socket.bufferedAmount = 0;
    hub.tick('tui');
    assert.equal(socket.ofType('state_update').length, 1);
  });

  test('a client still full after websocket.max_lag is closed with 4008 and terminated at once', async () => {
    const { hub, client, send, advance } = setup({ maxLag: 1000 });
    const { socket, client: stalled } = await client(['market_data']);
    socket.bufferedAmount = 1 << 20;
    send(stalled, { action: 'resync' });
    hub.tick('tui');
    assert.equal(hub.clients.has(stalled), true);
    advance(1001);
    hub.tick('tui');
    assert.deepEqual(socket.closedWith, { code: 4008, reason: 'slow_consumer' });
    assert.equal(socket.terminated, true, 'its buffers are released now, not after a close handshake');
    assert.equal(hub.clients.has(stalled), false);
    assert.equal(hub.stats.disconnects['4008'], 1);
  });
});
