import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decode } from '../../../src/codec.ts';
import { Hub, type HubOptions } from '../../../src/hub/hub.ts';
import type { ChangeView, Reply, SnapshotView, WireProtocol } from '../../../src/hub/protocol.ts';
import { hubProtocol } from '../../../src/hub/protocols/hub.ts';
import type { ClientType } from '../../../src/hub/session.ts';
import { type StateOptions, StateStore } from '../../../src/state.ts';
import { FakeClock, FakeSocket, hubOptions } from './fakes.ts';

/**
 * The fan-out at its seams: fake sockets (ClientSocket), a fake clock, and a wire protocol that counts what it
 * is asked to build. No socket, no real timer.
 */

/** The hub protocol in JSON, counting its calls; `key` lets a test put connections in separate groups. */
class CountingProtocol implements WireProtocol {
  readonly name = 'counting';
  readonly format = 'json' as const;
  readonly key: string;
  readonly sendOptions = { binary: false };
  readonly calls = { snapshot: 0, change: 0, reply: 0 };
  readonly changes: ChangeView[] = [];
  silent = false;
  private readonly inner = hubProtocol('json');

  constructor(key = 'counting/json') {
    this.key = key;
  }
  parse(data: Buffer, binary: boolean) {
    return this.inner.parse(data, binary);
  }
  snapshot(view: SnapshotView) {
    this.calls.snapshot++;
    return this.inner.snapshot(view);
  }
  change(change: ChangeView) {
    this.calls.change++;
    this.changes.push(change);
    return this.silent ? undefined : this.inner.change(change);
  }
  reply(reply: Reply) {
    this.calls.reply++;
    return this.inner.reply(reply);
  }
}

function setup(options: Partial<HubOptions> = {}, stateOptions: StateOptions = {}) {
  const state = new StateStore(stateOptions);
  const clock = new FakeClock();
  clock.time = 1_700_000_000_000;
  const hub = new Hub(state, hubOptions({ now: () => clock.now(), phaseClock: clock, ...options }));
  function connect(subscriptions: string[], protocol: WireProtocol, type: ClientType = 'tui') {
    const socket = new FakeSocket();
    const client = hub.connect(socket, type, protocol.format, undefined, protocol);
    hub.receive(client, Buffer.from(JSON.stringify({ action: 'subscribe', subscriptions })), false);
    return { socket, client };
  }
  const price = (last: number) =>
    state.set('market_data', 'BTCUSDT', { symbol: 'BTCUSDT', last_price: last });
  return { state, hub, clock, connect, price };
}

const json = (frame: Buffer) => decode(frame, false) as Record<string, unknown>;

describe('fan-out: one frame per cohort', () => {
  test('clients sharing protocol and subscriptions get one encode and the same Buffer', () => {
    const { hub, connect, price } = setup();
    const protocol = new CountingProtocol();
    price(1);
    const clients = Array.from({ length: 30 }, () => connect(['market_data'], protocol));
    assert.equal(protocol.calls.snapshot, 1, 'subscribers in one phase share the group snapshot');
    price(2);
    hub.tick('tui');
    assert.equal(protocol.calls.change, 1);
    const frames = clients.map(({ socket }) => socket.sent.at(-1)!);
    for (const frame of frames) assert.equal(frame, frames[0], 'the same Buffer, not an equal one');
    assert.equal(json(frames[0]).type, 'diff_update');
    assert.equal(hub.stats.broadcasts.tui, 1);
    assert.equal(hub.groupCount, 1);
  });

  test('the protocol key is part of the group key: each protocol builds its own frames', () => {
    const { hub, connect, price } = setup();
    const a = new CountingProtocol('a/json');
    const b = new CountingProtocol('b/json');
    connect(['market_data'], a);
    connect(['market_data'], a);
    connect(['market_data'], b);
    assert.equal(hub.groupCount, 2);
    price(1);
    hub.tick('tui');
    assert.equal(a.calls.change, 1);
    assert.equal(b.calls.change, 1);
  });

  test('a protocol with nothing to send for a change: no frame, and its clients are up to date all the same', () => {
    const { hub, state, connect, price } = setup();
    const protocol = new CountingProtocol();
    const { socket, client } = connect(['market_data'], protocol);
    const frames = socket.sent.length;
    protocol.silent = true;
    price(1);
    hub.tick('tui');
    assert.equal(socket.sent.length, frames);
    assert.equal(client.sequence, state.sequence);
    assert.equal(hub.stats.broadcasts.tui, 0);
    protocol.silent = false;
    price(2);
    hub.tick('tui');
    assert.equal(protocol.changes.at(-1)!.baseSequence, state.sequence - 1);
  });

  test('the change view offers the whole view after the change, on demand', () => {
    const { hub, connect, price, state } = setup();
    const protocol = new CountingProtocol();
    state.set('market_data', 'ETHUSDT', { symbol: 'ETHUSDT', last_price: 9 });
    connect(['market_data'], protocol);
    price(3);
    hub.tick('tui');
    const [change] = protocol.changes;
    assert.deepEqual(change.changes, { market_data: { BTCUSDT: { symbol: 'BTCUSDT', last_price: 3 } } });
    assert.deepEqual(Object.keys(change.view().market_data as object).sort(), ['BTCUSDT', 'ETHUSDT']);
  });
});

describe('fan-out: each client from its own sequence', () => {
  test('a client skipped while its buffer was full gets one merged diff from its own sequence', () => {
    const { hub, connect, price } = setup();
    const protocol = new CountingProtocol();
    price(1);
    const upToDate = connect(['market_data'], protocol);
    const behind = connect(['market_data'], protocol);
    const held = behind.client.sequence;
    behind.socket.bufferedAmount = 1 << 20;
    price(2);
    hub.tick('tui');
    assert.equal(protocol.calls.change, 1, 'one cohort: the full client is skipped');
    assert.equal(hub.stats.slowConsumerSkips, 1);
    behind.socket.bufferedAmount = 0;
    price(3);
    hub.tick('tui');
    assert.equal(protocol.calls.change, 3, 'two cohorts this tick, one encode each');
    const fresh = json(upToDate.socket.sent.at(-1)!);
    const merged = json(behind.socket.sent.at(-1)!);
    assert.equal(merged.base_sequence, held);
    assert.equal(fresh.base_sequence, (merged.sequence as number) - 1);
    assert.deepEqual(merged.changes, { market_data: { BTCUSDT: { last_price: 3 } } });
    assert.equal(merged.sequence, fresh.sequence);
  });

  test('a client behind the journal (TOO_OLD) is sent the group snapshot instead of a diff', () => {
    const { hub, connect, price, state } = setup({}, { maxJournal: 2 });
    const protocol = new CountingProtocol();
    price(1);
    const behind = connect(['market_data'], protocol);
    behind.socket.bufferedAmount = 1 << 20;
    for (let i = 2; i < 8; i++) {
      price(i);
      hub.tick('tui');
    }
    behind.socket.bufferedAmount = 0;
    hub.tick('tui');
    const last = json(behind.socket.sent.at(-1)!);
    assert.equal(last.type, 'state_update');
    assert.equal(last.sequence, state.sequence);
    assert.deepEqual(last.data, { market_data: { BTCUSDT: { symbol: 'BTCUSDT', last_price: 7 } } });
    assert.equal(behind.client.scanned, state.sequence);
  });

  test('a snapshot asked for over max_buffered waits, once, for a phase that finds the buffer drained', () => {
    const { hub, connect, price, state } = setup();
    const protocol = new CountingProtocol();
    price(1);
    const { socket, client } = connect(['market_data'], protocol);
    socket.bufferedAmount = 1 << 20;
    for (let i = 0; i < 3; i++) hub.receive(client, Buffer.from('{"action":"resync"}'), false);
    assert.equal(hub.stats.deferredSnapshots, 1);
    price(2);
    hub.tick('tui');
    assert.equal(socket.ofType('state_update').length, 1, 'only the first, from the subscribe');
    socket.bufferedAmount = 0;
    hub.tick('tui');
    const snapshots = socket.ofType('state_update');
    assert.equal(snapshots.length, 2);
    assert.equal(snapshots[1].sequence, state.sequence);
    assert.equal(socket.ofType('diff_update').length, 0);
  });
});

describe('fan-out: the scheduler drives it on the fake clock', () => {
  test('started, the hub sends a tui diff per 100 ms and a web diff per 250 ms, no real timer involved', () => {
    const { hub, clock, connect, price } = setup();
    const tui = connect(['market_data'], hubProtocol('json'), 'tui');
    const web = connect(['market_data'], hubProtocol('json'), 'web');
    hub.start();
    try {
      const start = clock.time;
      for (let step = 1; step <= 10; step++) {
        price(step);
        clock.advanceTo(start + step * 100);
      }
      assert.equal(tui.socket.ofType('diff_update').length, 10);
      assert.equal(web.socket.ofType('diff_update').length, 4);
    } finally {
      hub.stop();
    }
  });

  test('observers see each phase; one that throws is counted and the others still run', () => {
    const { hub, connect, price } = setup();
    connect(['market_data'], hubProtocol('json'));
    const seen: [ClientType, number][] = [];
    hub.observe({
      tick() {
        throw new Error('observer bug');
      },
    });
    const stop = hub.observe({ tick: (type, seconds) => seen.push([type, seconds]) });
    price(1);
    hub.tick('tui');
    hub.tick('web');
    assert.deepEqual(
      seen.map(([type]) => type),
      ['tui', 'web'],
    );
    assert.ok(seen.every(([, seconds]) => seconds >= 0 && seconds < 1));
    assert.equal(hub.stats.errors.tick, 2);
    stop();
    hub.tick('tui');
    assert.equal(seen.length, 2);
  });

  test('sent bytes are kept by client type, then format', () => {
    const { hub, connect, price } = setup();
    const json = connect(['market_data'], hubProtocol('json'));
    const packed = connect(['market_data'], hubProtocol('msgpack'), 'web');
    price(1);
    hub.tick('tui');
    hub.tick('web');
    const bytes = (client: { socket: FakeSocket }) =>
      client.socket.sent.reduce((sum, frame) => sum + frame.length, 0);
    assert.deepEqual(hub.stats.sentBytes, { tui: { json: bytes(json) }, web: { msgpack: bytes(packed) } });
  });
});
