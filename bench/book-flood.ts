/**
 * A flood of maximum-size order books (issue 11): 1 MiB books (~37k levels a side) on 4 symbols with a market_data
 * update after every second book, published by a process of its own (scripts/book-flood.ts) at a given rate,
 * to the hub (built in this process, as the tests build it) on a redis-server of its own. Once with books ingested
 * inline as they are read (ingest.orderbook_pending_max_size 0: the code before the fix), once deferred (the
 * default: latest book per channel, bounded work per event-loop turn). Reports per run: books ingested and per
 * second of flood, conflated and dropped books, subscriber cuts by Redis, market_data updates lost, the peak of the
 * subscriber's output buffer in Redis and the worst event-loop delay; then after/before ratios.
 *   node bench/book-flood.ts [--rates 24,48,96,0] [--books 16] [--symbols 4] [--rounds 1]
 * A rate is MiB/s; 0 publishes everything in one pipeline.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FloodSummary } from '../scripts/book-flood.ts';
import { startApp, waitReady } from '../scripts/lib/app.ts';
import { RedisServer } from '../scripts/lib/redis-server.ts';
import { parseCli } from '../src/cli.ts';
import type { JsonObject } from '../src/merge-patch.ts';
import { sleep } from './common.ts';

const USAGE = `Usage: npm run bench:book-flood -- [options]   (node bench/book-flood.ts)
Floods the hub (in this process, on its own redis-server) with 1 MiB order books, books ingested inline
against deferred; prints per run books ingested, conflated, dropped, subscriber cuts and loop delay.

Options:
  --rates LIST       publish rates in MiB/s, 0 for one pipeline (default 24,48,96,0)
  --books N          books per symbol (default 16)
  --symbols N        symbols that get books (default 4)
  --rounds N         runs per rate and mode (default 1)
  -h, --help         this help`;

const { values } = parseCli('bench:book-flood', USAGE, {
  options: {
    rates: { type: 'string', default: '24,48,96,0' },
    books: { type: 'string', default: '16' },
    symbols: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '1' },
  },
});

interface FloodRun {
  mode: 'inline' | 'deferred';
  rate: number;
  published: number;
  publishedMarketData: number;
  floodSeconds: number;
  booksIngested: number;
  booksPerSec: number;
  conflated: number;
  dropped: number;
  cuts: number;
  marketDataLost: number;
  latestBooksHeld: boolean;
  peakOutputMiB: number;
  maxLoopDelayMs: number;
}

async function run(mode: FloodRun['mode'], rate: number): Promise<FloodRun> {
  const redis = await RedisServer.start();
  const running = await startApp(redis.url, {
    ingest: mode === 'inline' ? { orderbook_pending_max_size: 0 } : {},
  });
  const admin = redis.client();
  try {
    const { app } = running;
    await waitReady(app);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    let peakOutput = 0;
    const sampling = setInterval(async () => {
      const list = (await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub').catch(() => '')) as string;
      for (const match of list.matchAll(/omem=(\d+)/g)) peakOutput = Math.max(peakOutput, Number(match[1]));
    }, 20);
    delay.enable();
    const started = performance.now();
    const child = spawn(
      process.execPath,
      [
        '--no-warnings',
        new URL('../scripts/book-flood.ts', import.meta.url).pathname,
        ...['--redis', redis.url, '--rate', String(rate), '--books', values.books!],
        ...['--symbols', values.symbols!],
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    await once(child, 'exit');
    const summary = JSON.parse(output) as FloodSummary;
    const symbol = summary.marketDataChannel.split(':')[1];
    const latest = () =>
      Object.entries(summary.lastBook).every(
        ([name, id]) => (app.state.get('orderbook', name) as JsonObject | undefined)?.last_update_id === id,
      );
    const settled = () =>
      latest() &&
      (app.state.get('market_data', symbol) as JsonObject | undefined)?.last_price === summary.marketData;
    // Everything is published: wait for the hub to settle on the last of it, or give up after 5 s (it was cut).
    const deadline = performance.now() + 5000;
    while (!settled() && performance.now() < deadline) await sleep(10);
    const floodSeconds = (performance.now() - started) / 1000;
    clearInterval(sampling);
    delay.disable();
    const deferred = app.redisIngest.deferred();
    const booksIngested = app.ingest.counters.messages.redis.orderbook ?? 0;
    return {
      mode,
      rate,
      published: summary.books,
      publishedMarketData: summary.marketData,
      floodSeconds,
      booksIngested,
      booksPerSec: booksIngested / floodSeconds,
      conflated: deferred.conflated,
      dropped: deferred.dropped,
      cuts: app.redisIngest.info.reconnects,
      marketDataLost: summary.marketData - (app.ingest.counters.messages.redis.market_data ?? 0),
      latestBooksHeld: latest(),
      peakOutputMiB: peakOutput / 2 ** 20,
      maxLoopDelayMs: delay.max / 1e6,
    };
  } finally {
    admin.disconnect();
    await running.close();
    await redis.kill();
  }
}

const rates = values.rates!.split(',').map(Number);
const runs: FloodRun[] = [];
const row = (r: FloodRun) =>
  [
    r.mode.padEnd(8),
    (r.rate === 0 ? 'burst' : `${r.rate} MiB/s`).padStart(10),
    `${r.booksIngested}/${r.published}`.padStart(7),
    r.booksPerSec.toFixed(1).padStart(7),
    String(r.conflated).padStart(9),
    String(r.dropped).padStart(7),
    String(r.cuts).padStart(4),
    `${r.marketDataLost}/${r.publishedMarketData}`.padStart(7),
    (r.latestBooksHeld ? 'yes' : 'no').padStart(6),
    r.peakOutputMiB.toFixed(1).padStart(8),
    r.maxLoopDelayMs.toFixed(0).padStart(6),
    r.floodSeconds.toFixed(1).padStart(5),
  ].join(' ');
process.stdout.write(
  `${['mode'.padEnd(8), 'publisher'.padStart(10), 'books'.padStart(7), 'books/s'.padStart(7), 'conflated'.padStart(9), 'dropped'.padStart(7), 'cuts'.padStart(4), 'md lost'.padStart(7), 'latest'.padStart(6), 'omem MiB'.padStart(8), 'lag ms'.padStart(6), 's'.padStart(5)].join(' ')}\n`,
);
for (let round = 0; round < Number(values.rounds); round++) {
  for (const rate of rates) {
    for (const mode of ['inline', 'deferred'] as const) {
      const result = await run(mode, rate);
      runs.push(result);
      process.stdout.write(`${row(result)}\n`);
    }
  }
}
process.stdout.write('\nafter/before (deferred/inline), per publisher rate:\n');
for (const rate of rates) {
  const pick = (mode: FloodRun['mode']) => runs.filter((r) => r.mode === mode && r.rate === rate);
  const sum = (list: FloodRun[], key: 'marketDataLost' | 'cuts' | 'booksPerSec') =>
    list.reduce((total, r) => total + r[key], 0);
  const [before, after] = [pick('inline'), pick('deferred')];
  const ratio = (a: number, b: number) => (b === 0 ? (a === 0 ? '1' : '∞') : (a / b).toFixed(2));
  process.stdout.write(
    `  ${rate === 0 ? 'burst' : `${rate} MiB/s`}: books/s ×${ratio(sum(after, 'booksPerSec'), sum(before, 'booksPerSec'))}, ` +
      `cuts ${sum(before, 'cuts')} → ${sum(after, 'cuts')}, market_data lost ${sum(before, 'marketDataLost')} → ${sum(after, 'marketDataLost')}\n`,
  );
}
