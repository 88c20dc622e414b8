import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { RedisStatus } from '../../plugins/redis-ingest.ts';
import type { JsonObject } from '../../src/merge-patch.ts';
import { type Stack, startStack, stopStack } from '../helpers/app.ts';
import type { FloodSummary } from '../helpers/book-flood.ts';

/**
 * Issue 11 ("Weak": maximum-size order books). 64 books of 1 MiB (~38k levels a side) on 4 symbols, published
 * pipelined from another process with a market_data update after every second book: 64 MiB, twice Redis's
 * client-output-buffer-limit for pub/sub (32 MB). A hub that ingests each book inline (~55 ms) reads its subscriber
 * socket at ~18 MiB/s, Redis cuts the subscription and the market_data updates in the cut buffer are lost.
 */

/**
 * MiB/s. Published all at once, the flood gets even a subscriber that does nothing cut (Redis reads a publisher
 * faster than it writes to a subscriber, and ioredis alone parses ~30 MiB/s of it): measured, one that does
 * nothing keeps up at 40–80 MiB/s, one that spends 55 ms per book is cut at 40.
 */
const RATE = 48;

let stack: Stack;
const statuses: RedisStatus[] = [];

before(async () => {
  stack = await startStack();
  stack.running.app.redisIngest.events.on('status', (status: RedisStatus) => statuses.push(status));
});
after(() => stopStack(stack));

/** Publishes the flood from a child process; resolves with what it published. */
async function flood(redisUrl: string): Promise<FloodSummary> {
  const child = spawn(
    process.execPath,
    [
      '--no-warnings',
      new URL('../helpers/book-flood.ts', import.meta.url).pathname,
      '--redis',
      redisUrl,
      '--rate',
      String(RATE),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, 'the flood publisher failed');
  return JSON.parse(output) as FloodSummary;
}

/** Polls `done` every 20 ms until it holds or `timeoutMs` passes; returns whether it held. */
async function until(done: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

describe('a flood of maximum-size order books', () => {
  test('never gets the subscriber cut: every market_data update is applied and each symbol ends on its latest book', async () => {
    const { app } = stack.running;
    const summary = await flood(stack.redis.url);
    assert.ok(
      summary.bytesPerBook > 1_000_000 && summary.bytesPerBook <= 1 << 20,
      `${summary.bytesPerBook} B`,
    );
    const symbol = summary.marketDataChannel.split(':')[1];
    const book = (name: string) => app.state.get('orderbook', name) as JsonObject | undefined;
    const price = () => (app.state.get('market_data', symbol) as JsonObject | undefined)?.last_price;
    const settled = () =>
      price() === summary.marketData &&
      Object.entries(summary.lastBook).every(([name, id]) => book(name)?.last_update_id === id);
    // Everything has been published: the hub catches up in well under a second once it stops being flooded.
    const caughtUp = await until(settled, 15_000);

    assert.equal(app.redisIngest.info.reconnects, 0, 'Redis cut the subscriber');
    assert.deepEqual(statuses, [], 'the subscriber connection went down');
    assert.equal(app.ingest.counters.messages.market_data, summary.marketData, 'market_data updates lost');
    assert.equal(price(), summary.marketData);
    assert.ok(caughtUp, 'the hub did not end on the latest book of every symbol');
    for (const [name, id] of Object.entries(summary.lastBook)) {
      const held = book(name)!;
      assert.equal(held.last_update_id, id, name);
      // The best 20 levels of the last book, as any book is reduced.
      assert.deepEqual((held.bids as number[][])[0], [49_999.25, 2]);
      assert.equal((held.asks as unknown[]).length, 20);
    }
    assert.equal(app.ingest.counters.invalid.orderbook ?? 0, 0);
    const applied = app.ingest.counters.messages.orderbook ?? 0;
    assert.ok(
      applied >= Object.keys(summary.lastBook).length && applied <= summary.books,
      `${applied} books`,
    );
  });
});
