/**
 * A flood of maximum-size order books (1 MiB, ~38k levels a side) interleaved with market_data updates, published
 * pipelined from a process of its own, as a hostile or runaway backend would: the hub must read its subscriber
 * socket as fast as Redis writes it, whatever the books cost to ingest.
 *
 *   node scripts/book-flood.ts --redis redis://127.0.0.1:PORT [--symbols 4] [--books 16] [--every 2]
 *
 * Prints one JSON line: the FloodSummary (what the hub must hold at the end). The e2e test (test/e2e/book-flood) and
 * the benchmark (bench/book-flood.ts) run it as a child process: published from the hub's own process, the flood
 * would be paced by the hub's event loop and never build up in Redis.
 */
import { Redis } from 'ioredis';
import { parseCli, usageError } from '../src/cli.ts';

export interface FloodPlan {
  /** Symbols that get books: BOOK0 … */
  symbols: number;
  /** Books per symbol. */
  books: number;
  /** One market_data update after every `every` books; 0: one, after the last book. */
  every: number;
}

export interface FloodSummary {
  /** The channel of the market_data updates and how many were published; last_price of the k-th is k. */
  marketDataChannel: string;
  marketData: number;
  /** Per book symbol, the last_update_id of its last book (books are numbered 1… across symbols). */
  lastBook: Record<string, number>;
  books: number;
  bytesPerBook: number;
  publishSeconds: number;
}

export const FLOOD_MARKET_DATA = 'market_data:FLOODMD';
/** Levels a side: 37,400 keep a book just under 1 MiB, the default ingest.max_message_size. */
export const FLOOD_LEVELS = 37_400;

/** Both sides of a maximum-size book, as JSON text: `"bids":{…},"asks":{…}` (built once, shared by every book). */
function sidesJson(levels: number): string {
  const bids: string[] = [];
  const asks: string[] = [];
  for (let i = 1; i <= levels; i++) {
    const half = i % 2 === 0 ? '.5' : '';
    bids.push(`"${50_000 - i}.25":${(i % 9) + 1}${half}`);
    asks.push(`"${50_000 + i}.25":${(i % 7) + 1}${half}`);
  }
  return `"bids":{${bids.join(',')}},"asks":{${asks.join(',')}}`;
}

/** The commands of the flood, in publish order, and what they leave in the state. */
export function floodCommands(plan: FloodPlan): { commands: [string, string][]; summary: FloodSummary } {
  const sides = sidesJson(FLOOD_LEVELS);
  const commands: [string, string][] = [];
  const lastBook: Record<string, number> = {};
  let id = 0;
  let marketData = 0;
  for (let round = 0; round < plan.books; round++) {
    for (let s = 0; s < plan.symbols; s++) {
      const symbol = `BOOK${s}`;
      id++;
      lastBook[symbol] = id;
      commands.push([`orderbook:${symbol}`, `{"symbol":"${symbol}","last_update_id":${id},${sides}}`]);
      const last = round === plan.books - 1 && s === plan.symbols - 1;
      if (plan.every > 0 ? id % plan.every === 0 : last) {
        marketData++;
        commands.push([FLOOD_MARKET_DATA, `{"last_price":${marketData}}`]);
      }
    }
  }
  return {
    commands,
    summary: {
      marketDataChannel: FLOOD_MARKET_DATA,
      marketData,
      lastBook,
      books: id,
      bytesPerBook: Buffer.byteLength(commands[0][1]),
      publishSeconds: 0,
    },
  };
}

const USAGE = `Usage: node scripts/book-flood.ts --redis URL [options]
Publishes a flood of maximum-size (1 MiB) order books interleaved with market_data updates; prints one JSON
line: what the hub must hold at the end.

Options:
  --redis URL        Redis to publish on (required)
  --symbols N        symbols BOOK0… that get books (default 4)
  --books N          books per symbol (default 16)
  --every N          one market_data update after every N books; 0: one, after the last (default 2)
  --rate MIBS        MiB/s; 0: everything in one pipeline (default 0)
  -h, --help         this help`;

if (import.meta.main) {
  const { values } = parseCli('book-flood', USAGE, {
    options: {
      redis: { type: 'string' },
      symbols: { type: 'string', default: '4' },
      books: { type: 'string', default: '16' },
      every: { type: 'string', default: '2' },
      // MiB/s; 0: everything in one pipeline, as fast as Redis takes it.
      rate: { type: 'string', default: '0' },
    },
  });
  if (!values.redis) usageError('book-flood', '--redis URL is required');
  const { commands, summary } = floodCommands({
    symbols: Number(values.symbols),
    books: Number(values.books),
    every: Number(values.every),
  });
  const redis = new Redis(values.redis, { maxRetriesPerRequest: 1 });
  const rate = Number(values.rate) * 2 ** 20;
  const started = performance.now();
  if (rate > 0) {
    // Paced: each 20 ms slot, one pipeline of the commands due by then (the bytes published so far / rate).
    let sent = 0;
    let bytes = 0;
    while (sent < commands.length) {
      const due = (performance.now() - started + 20) / 1000;
      const pipeline = redis.pipeline();
      while (sent < commands.length && bytes / rate <= due) {
        const [channel, payload] = commands[sent++];
        pipeline.publish(channel, payload);
        bytes += payload.length;
      }
      const replies = pipeline.exec();
      await new Promise((resolve) => setTimeout(resolve, 20));
      await replies;
    }
  } else {
    const pipeline = redis.pipeline();
    for (const [channel, payload] of commands) pipeline.publish(channel, payload);
    await pipeline.exec();
  }
  summary.publishSeconds = (performance.now() - started) / 1000;
  redis.disconnect();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
