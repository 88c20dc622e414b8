import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import { type RunningApp, startStack, stopStack } from '../helpers/app.ts';
import type { TestRedis } from '../helpers/redis.ts';

/**
 * Resync and snapshots against sockets that never read: the hub holds back a snapshot while a socket's buffer is
 * over websocket.max_buffered (one pending at most), so what it hands such a socket stays bounded however often
 * it asks; and a socket closed as a slow consumer (4008) lets go of its buffers at once.
 */

const SYMBOLS = 200;
const PAD = 'x'.repeat(10_000);

/** ~2 MB of market data, put straight into the state: the test is about the hub, not ingest. */
function fillState(running: RunningApp): number {
  for (let i = 0; i < SYMBOLS; i++) {
    running.app.state.set('market_data', `SYM${i}USDT`, { symbol: `SYM${i}USDT`, last_price: i, pad: PAD });
  }
  return SYMBOLS * PAD.length;
}

/** A client that subscribes to `market_data` and then stops reading (its TCP socket paused). */
async function stalledClient(running: RunningApp) {
  const socket = new WebSocket(`${running.url.replace('http', 'ws')}/ws?type=tui`);
  socket.on('error', () => {});
  await once(socket, 'open');
  (socket as unknown as { _socket: Socket })._socket.pause();
  socket.send(JSON.stringify({ action: 'subscribe', subscriptions: ['market_data'] }));
  return socket;
}

/** The server side of the sockets connected so far, each with a count of the messages it received. */
function serverSockets(running: RunningApp) {
  return [...running.app.websocketServer.clients].map((socket) => {
    const watched = { socket, received: 0, waiters: [] as (() => void)[] };
    socket.on('message', () => {
      watched.received++;
      for (const wake of watched.waiters.splice(0)) wake();
    });
    return watched;
  });
}

describe('resync from sockets that never read', () => {
  let redis: TestRedis;
  let publisher: Redis;
  let running: RunningApp;
  before(async () => {
    ({ redis, publisher, running } = await startStack({
      broadcast: { tui_interval: '20ms' },
      websocket: {
        max_buffered: '256KiB',
        max_lag: '60s',
        ping_interval: '60s',
        read_timeout: '120s',
        connect_rate_limit: { max: 1000, window: '1m' },
      },
    }));
  });
  after(() => stopStack({ redis, publisher, running }));

  test('what the hub hands them stays bounded: one pending snapshot per socket, not one per resync', async (t) => {
    const snapshotBytes = fillState(running);
    const clients = await Promise.all(Array.from({ length: 5 }, () => stalledClient(running)));
    t.after(() => {
      for (const client of clients) client.terminate();
    });
    const servers = serverSockets(running);
    assert.equal(servers.length, clients.length);
    const sentBefore = running.app.hub.stats.sentBytes.tui.json ?? 0;

    // The attack: each socket asks for a resync 10 times a second (within the message rate limit) for 3 s.
    const RESYNCS = 30;
    for (let round = 0; round < RESYNCS; round++) {
      for (const client of clients) client.send(JSON.stringify({ action: 'resync' }));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Every message (subscribe + resyncs) has been handled by the hub.
    await Promise.all(
      servers.map(async (server) => {
        while (server.received < RESYNCS) await new Promise<void>((wake) => server.waiters.push(wake));
      }),
    );

    const handed = (running.app.hub.stats.sentBytes.tui.json ?? 0) - sentBefore;
    const snapshotsPerSocket = handed / snapshotBytes / clients.length;
    // The subscribe's snapshot fills what the kernel takes and crosses max_buffered; every resync after it waits
    // (31 snapshots asked for; about 30 were handed before snapshots were held back).
    assert.ok(snapshotsPerSocket < 4, `${snapshotsPerSocket.toFixed(1)} snapshots handed per socket`);
    assert.ok(running.app.hub.stats.deferredSnapshots >= clients.length);
    for (const server of servers) {
      assert.ok(
        server.socket.bufferedAmount < 256 * 1024 + 2 * snapshotBytes,
        `${server.socket.bufferedAmount} bytes buffered for one socket`,
      );
    }
  });
});

describe('a socket closed as a slow consumer', () => {
  let redis: TestRedis;
  let publisher: Redis;
  let running: RunningApp;
  before(async () => {
    ({ redis, publisher, running } = await startStack({
      broadcast: { tui_interval: '20ms' },
      websocket: { max_buffered: '64KiB', max_lag: '500ms', connect_rate_limit: { max: 1000, window: '1m' } },
    }));
  });
  after(() => stopStack({ redis, publisher, running }));

  test('is closed with 4008 and its socket released at once, not after a 30 s close handshake', async (t) => {
    fillState(running);
    const client = await stalledClient(running);
    t.after(() => client.terminate());
    const [server] = serverSockets(running);
    for (let i = 0; i < 5; i++) client.send(JSON.stringify({ action: 'resync' }));
    const released = once(server.socket, 'close', { signal: AbortSignal.timeout(5000) });
    // It does not read, so it never answers the hub's ping: closed with 4008 after max_lag.
    await released;
    assert.equal(running.app.hub.stats.disconnects['4008'], 1);
    assert.equal(running.app.hub.clients.size, 0);
    assert.equal(running.app.websocketServer.clients.size, 0);
  });
});
