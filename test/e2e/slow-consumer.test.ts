import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import { ClientView, type DiffUpdate, type JsonObject, type StateUpdate } from '../../src/client.ts';
import { decode } from '../../src/codec.ts';
import { buildFilter } from '../../src/topics.ts';
import { type RunningApp, startStack, stopStack } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import type { TestRedis } from '../helpers/redis.ts';

/** A client over a real socket whose reading can be stopped and resumed, as a stalled browser tab would. */
async function stallableClient(url: string, subscriptions: string[]) {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/ws?type=tui`);
  const view = new ClientView();
  const diffs: DiffUpdate[] = [];
  socket.on('message', (data: Buffer, binary: boolean) => {
    const message = decode(data, binary) as StateUpdate | DiffUpdate | { type: string };
    if (message.type === 'state_update' || message.type === 'diff_update') {
      assert.ok(view.apply(message as StateUpdate | DiffUpdate), 'a diff must start where the view is');
      if (message.type === 'diff_update') diffs.push(message as DiffUpdate);
      socket.emit('view');
    }
  });
  await once(socket, 'open');
  const subscribed = once(socket, 'view');
  socket.send(JSON.stringify({ action: 'subscribe', subscriptions }));
  await subscribed;
  // ws keeps the underlying TCP socket here; pausing it stops reading, so data piles up in the kernel.
  const tcp = (socket as unknown as { _socket: Socket })._socket;
  return { socket, view, diffs, stall: () => tcp.pause(), resume: () => tcp.resume() };
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

describe('a client that stops reading', () => {
  let redis: TestRedis;
  let publisher: Redis;
  let running: RunningApp;
  before(async () => {
    ({ redis, publisher, running } = await startStack({
      broadcast: { tui_interval: '20ms' },
      websocket: { max_lag: '1s', max_buffered: '64KiB' },
      // Each update carries 20 KB of padding, over the default ingest.max_record_size.
      ingest: { max_record_size: '64KiB' },
    }));
  });
  after(() => stopStack({ redis, publisher, running }));

  /** Publishes `count` updates 10 ms apart and returns the fast client's publish→apply latencies. */
  async function latencies(fast: Awaited<ReturnType<typeof connectClient>>, count: number, pad: string) {
    const received: number[] = [];
    const off = fast.on('diff_update', (message) => {
      const changes = (message as DiffUpdate).changes.market_data as JsonObject | undefined;
      const sentAt = (changes?.LAG as JsonObject | undefined)?.sent_at;
      if (typeof sentAt === 'number') received.push(Date.now() - sentAt);
    });
    let last = 0;
    for (let i = 0; i < count; i++) {
      last = Date.now();
      await publisher.publish('market_data:LAG', JSON.stringify({ last_price: i, sent_at: last, pad }));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await viewWhere(
      fast,
      (d) => ((d.market_data as JsonObject).LAG as JsonObject | undefined)?.sent_at === last,
    );
    off();
    return received;
  }

  test('is closed with 4008 while a fast client keeps its latency', async () => {
    const fast = await connectClient(running.url, { type: 'tui' });
    await fast.subscribe(['market_data']);
    const pad = 'x'.repeat(20_000);
    const baseline = await latencies(fast, 40, pad);

    const slow = await stallableClient(running.url, ['market_data']);
    slow.stall();
    // Keep publishing until the hub gives up on the stalled client (max_lag 1 s, detected by its unanswered ping).
    const closedBefore = running.app.hub.stats.disconnects['4008'] ?? 0;
    const during: number[] = [];
    while ((running.app.hub.stats.disconnects['4008'] ?? 0) === closedBefore) {
      during.push(...(await latencies(fast, 10, pad)));
    }
    assert.equal(running.app.hub.clients.size, 1, 'only the fast client is left');
    const closed = once(slow.socket, 'close');
    slow.resume();
    const [code, reason] = await closed;
    assert.equal(code, 4008);
    assert.equal(String(reason), 'slow_consumer');

    // Same process, same traffic: the stalled client must not have slowed the fast one down.
    const before90 = percentile(baseline, 90);
    const during90 = percentile(during, 90);
    assert.ok(
      during90 <= before90 * 3 + 50,
      `p90 ${during90}ms with a stalled client vs ${before90}ms before`,
    );
    fast.close();
  });
});

describe('a client whose socket buffer fills', () => {
  let redis: TestRedis;
  let publisher: Redis;
  let running: RunningApp;
  before(async () => {
    ({ redis, publisher, running } = await startStack({
      broadcast: { tui_interval: '20ms' },
      websocket: { max_lag: '30s', max_buffered: '64KiB', ping_interval: '30s', read_timeout: '60s' },
      // One account update of ~8 MB: over the default record, state and pending-book limits.
      ingest: {
        max_message_size: '32MiB',
        max_record_size: '32MiB',
        max_state_size: '64MiB',
        orderbook_pending_max_size: '32MiB',
      },
    }));
  });
  after(() => stopStack({ redis, publisher, running }));

  test('is skipped, then gets one merged diff that brings it to the current sequence', async () => {
    const fast = await connectClient(running.url, { type: 'tui' });
    await fast.subscribe(['account']);
    const slow = await stallableClient(running.url, ['account']);
    slow.stall();
    // One update far larger than what the kernel absorbs for a socket (a few MB): the rest stays buffered.
    const balances: Record<string, number> = {};
    for (let i = 0; i < 400_000; i++) balances[`ASSET${i}`] = i;
    await publisher.publish('account:main', JSON.stringify({ total_balance: 1, balances }));
    await viewWhere(fast, (d) => (d.account as JsonObject | undefined)?.total_balance === 1, 20_000);
    const skipsBefore = running.app.hub.stats.slowConsumerSkips;
    for (let i = 2; i <= 6; i++) {
      await publisher.publish('account:main', JSON.stringify({ total_balance: i, balances: { USDT: i } }));
      await viewWhere(fast, (d) => (d.account as JsonObject).total_balance === i);
    }
    assert.ok(running.app.hub.stats.slowConsumerSkips > skipsBefore, 'the full client was skipped');
    assert.ok(running.app.hub.maxBufferedAmount() > 64 * 1024);

    slow.resume();
    const filter = buildFilter(['account']);
    await new Promise<void>((resolve) => {
      const check = () => {
        if (slow.view.sequence === running.app.state.sequence) resolve();
        else slow.socket.once('view', check);
      };
      check();
    });
    // The big diff, then at most one more that merges the five small updates: conflation, not a backlog.
    assert.ok(slow.diffs.length <= 2, `expected at most 2 diffs, got ${slow.diffs.length}`);
    assert.deepEqual(slow.view.data, JSON.parse(JSON.stringify(running.app.state.snapshot(filter))));
    assert.equal((slow.view.data.account as JsonObject).total_balance, 6);
    slow.socket.close();
    fast.close();
  });
});
