import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { RedisStatus } from '../../plugins/redis-ingest.ts';
import type { FloodSummary } from '../../scripts/book-flood.ts';
import type { JsonObject } from '../../src/merge-patch.ts';
import { type Stack, startStack, stopStack } from '../helpers/app.ts';

/**
 * Issue 11 ("Weak": maximum-size order books). A hub that ingests each 1 MiB book (~38k levels a side, ~55 ms) as
 * it is read reads its subscriber socket no faster than it ingests: under a flood Redis cut the subscription
 * (32 MB output buffer) and the market_data updates in the cut buffer were lost. Whether Redis cuts depends on the
 * publisher's rate against the hub's CPU, which a shared CI machine does not promise (the rates are measured in
 * bench/book-flood.ts). What does not depend on the machine is the order: the hub must read on while books wait.
 * 16 books on 4 symbols, then one market_data update, published at once from another process (16 MiB: Redis cuts
 * neither way): read as it arrives, the update is applied while most books still wait; ingested inline, it would
 * wait for all 16.
 */

let stack: Stack;
const statuses: RedisStatus[] = [];

before(async () => {
  stack = await startStack();
  stack.running.app.redisIngest.events.on('status', (status: RedisStatus) => statuses.push(status));
});
after(() => stopStack(stack));

/** Publishes the flood from a child process, all in one pipeline; resolves with what it published. */
async function flood(redisUrl: string): Promise<FloodSummary> {
  const child = spawn(
    process.execPath,
    [
      '--no-warnings',
      new URL('../../scripts/book-flood.ts', import.meta.url).pathname,
      '--redis',
      redisUrl,
      '--books',
      '4',
      '--every',
      '0',
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
  test('the subscriber is read on while books wait: an update published after 16 books is applied before most of them', async () => {
    const { app } = stack.running;
    // How many books had been ingested when the market_data update was: recorded around our own ingest.
    let booksBeforeUpdate: number | undefined;
    const handleMessage = app.ingest.handleMessage.bind(app.ingest);
    app.ingest.handleMessage = (channel, payload) => {
      if (channel.startsWith('market_data:'))
        booksBeforeUpdate ??= app.ingest.counters.messages.redis.orderbook ?? 0;
      handleMessage(channel, payload);
    };
    const summary = await flood(stack.redis.url);
    assert.ok(
      summary.bytesPerBook > 1_000_000 && summary.bytesPerBook <= 1 << 20,
      `${summary.bytesPerBook} B`,
    );
    assert.equal(summary.books, 16);
    assert.equal(summary.marketData, 1);
    const symbol = summary.marketDataChannel.split(':')[1];
    const book = (name: string) => app.state.get('orderbook', name) as JsonObject | undefined;
    const price = () => (app.state.get('market_data', symbol) as JsonObject | undefined)?.last_price;
    const settled = () =>
      price() === summary.marketData &&
      Object.entries(summary.lastBook).every(([name, id]) => book(name)?.last_update_id === id);
    const caughtUp = await until(settled, 30_000);

    assert.ok(booksBeforeUpdate !== undefined, 'the market_data update was never ingested');
    assert.ok(booksBeforeUpdate < summary.books / 2, `${booksBeforeUpdate} of 16 books were ingested first`);
    assert.equal(app.redisIngest.info.reconnects, 0, 'Redis cut the subscriber');
    assert.deepEqual(statuses, [], 'the subscriber connection went down');
    assert.ok(caughtUp, 'the hub did not end on the latest book of every symbol');
    for (const [name, id] of Object.entries(summary.lastBook)) {
      const held = book(name)!;
      assert.equal(held.last_update_id, id, name);
      // The best 20 levels of the last book, as any book is reduced.
      assert.deepEqual((held.bids as number[][])[0], [49_999.25, 2]);
      assert.equal((held.asks as unknown[]).length, 20);
    }
    assert.equal(app.ingest.counters.invalid.redis.orderbook ?? 0, 0);
    // Books of a symbol still waiting when a newer one arrived were replaced, not ingested.
    const applied = app.ingest.counters.messages.redis.orderbook ?? 0;
    assert.ok(applied >= 4 && applied <= summary.books, `${applied} books`);
  });
});
