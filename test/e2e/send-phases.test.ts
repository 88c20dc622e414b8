import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import { type RunningApp, startStack, stopStack } from '../helpers/app.ts';
import { openSocket, type WatchedSocket } from '../helpers/client.ts';
import type { TestRedis } from '../helpers/redis.ts';

// A group is spread from 25 clients per phase: 4 phases → 100 clients, and gathered below 80.
const PHASES = 4;
const INTERVAL = 200;
const LARGE = 110;
const SMALL = 6;

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;

before(async () => {
  ({ redis, publisher, running } = await startStack({
    broadcast: { tui_interval: `${INTERVAL}ms`, send_phases: PHASES },
    websocket: {
      connect_rate_limit: { max: 100_000, window: '1m' },
      max_clients_per_user: 1000,
    },
  }));
});
after(() => stopStack({ redis, publisher, running }));

interface Frame {
  type?: string;
  timestamp?: string;
  data?: { market_data?: Record<string, { last_price: number }> };
  changes?: { market_data?: Record<string, { last_price: number } | null> };
}

async function subscribed(symbol: string, count: number): Promise<WatchedSocket[]> {
  const sockets: WatchedSocket[] = [];
  for (let batch = 0; batch < count; batch += 20) {
    const size = Math.min(20, count - batch);
    const opened = await Promise.all(
      Array.from({ length: size }, () => openSocket(running.url, { query: 'type=tui&format=json' })),
    );
    await Promise.all(
      opened.map(async (socket) => {
        const from = socket.messages.length;
        socket.ws.send(JSON.stringify({ action: 'subscribe', subscriptions: [`market_data:${symbol}`] }));
        await socket.nextMessage(from + 1); // `subscribed`, then the snapshot
      }),
    );
    sockets.push(...opened);
  }
  return sockets;
}

function lastPrice(socket: WatchedSocket, symbol: string): number | undefined {
  for (let i = socket.messages.length - 1; i >= 0; i--) {
    const frame = socket.messages[i] as Frame;
    const entity = frame.changes?.market_data?.[symbol] ?? frame.data?.market_data?.[symbol];
    if (entity) return entity.last_price;
  }
  return undefined;
}

/** Publishes a rising price on both symbols every 10 ms until every socket holds the `target` price. */
async function publishUntilAllSee(
  sockets: WatchedSocket[],
  symbols: string[],
  target: number,
): Promise<void> {
  let price = 0;
  const deadline = Date.now() + 15_000;
  while (sockets.some((socket) => symbols.some((symbol) => lastPrice(socket, symbol) !== target))) {
    assert.ok(Date.now() < deadline, 'not every client got the last price within 15 s');
    if (price < target) {
      price++;
      await Promise.all(
        symbols.map((symbol) =>
          publisher.publish(`market_data:${symbol}`, JSON.stringify({ last_price: price })),
        ),
      );
    }
    // Traffic pacing, not synchronisation: the loop condition is what it waits for.
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function diffTimes(socket: WatchedSocket, from: number): number[] {
  return socket.messages
    .slice(from)
    .filter((frame) => (frame as Frame).type === 'diff_update')
    .map((frame) => Date.parse((frame as Frame).timestamp as string));
}

/** Runs `traffic` and returns the diffs the hub encoded for tui clients during it, per interval it lasted. */
async function encodesPerInterval(
  traffic: () => Promise<void>,
): Promise<{ rate: number; intervals: number }> {
  const { broadcasts } = running.app.hub.stats;
  const before = broadcasts.tui;
  const started = performance.now();
  await traffic();
  const intervals = (performance.now() - started) / INTERVAL;
  return { rate: (broadcasts.tui - before) / intervals, intervals };
}

test('a large group is sent in slices spread over the interval, each client once per interval', async () => {
  const large = await subscribed('SPREAD', LARGE);
  const small = await subscribed('WHOLE', SMALL);
  assert.equal(running.app.hub.spreadGroupCount, 1);
  const starts = new Map([...large, ...small].map((socket) => [socket, socket.messages.length]));

  // One encode per phase for the spread group (PHASES per interval), one per interval for the whole one.
  const largeRun = await encodesPerInterval(() => publishUntilAllSee(large, ['SPREAD'], 100));
  const smallRun = await encodesPerInterval(() => publishUntilAllSee(small, ['WHOLE'], 100));
  const [largeRate, smallRate] = [largeRun.rate, smallRun.rate];
  assert.ok(largeRate > PHASES * 0.6, `large group: ${largeRate} encodes per interval`);
  assert.ok(smallRate < 1.6, `small group: ${smallRate} encodes per interval`);

  // Every client keeps its slot: about one diff per interval while prices change, never two back to back (a
  // late phase runs at once and the next keeps its slot, so a gap can be shorter than an interval).
  for (const [sockets, run] of [
    [large, largeRun],
    [small, smallRun],
  ] as const) {
    for (const socket of sockets) {
      const times = diffTimes(socket, starts.get(socket)!);
      assert.ok(
        times.length >= 0.7 * run.intervals - 1,
        `a client got ${times.length} diffs in ${run.intervals.toFixed(1)} intervals`,
      );
      for (let i = 1; i < times.length; i++) {
        const gap = times[i] - times[i - 1];
        assert.ok(gap >= INTERVAL / 4, `two diffs ${gap} ms apart`);
      }
    }
  }

  // Fewer than 20 per phase: the group is sent whole again, one encode per interval.
  for (const socket of large.splice(0, 40)) socket.ws.close();
  const closing = Date.now();
  while (running.app.hub.clients.size > LARGE - 40 + SMALL) {
    assert.ok(Date.now() - closing < 5000, 'closed sockets were not dropped');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(running.app.hub.spreadGroupCount, 0);
  // The first interval after gathering sends each slice's view on its own; then one encode per interval.
  await publishUntilAllSee(large, ['SPREAD'], 110);
  const { rate: gatheredRate } = await encodesPerInterval(() => publishUntilAllSee(large, ['SPREAD'], 200));
  assert.ok(gatheredRate < 1.6, `gathered group: ${gatheredRate} encodes per interval`);
  for (const socket of [...large, ...small]) socket.ws.close();
});
