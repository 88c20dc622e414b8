/**
 * The benchmark's Redis publisher (ideas from scripts/publisher.ts), two modes:
 *
 * realistic (default): per symbol, `market_data` and a full `orderbook` (`--levels` per side) `--rate` times a
 *   second, the symbols' updates spread evenly over each interval as a market-data service's stream is; a burst
 *   of 5–20 trades per symbol every 2 s; an order lifecycle (NEW → PARTIALLY_FILLED → FILLED) every second;
 *   account, a position and the strategies once a second. Every market_data carries `sent_at`: CLOCK_MONOTONIC
 *   in ms (process.hrtime), the same clock in every process of the host, read by the load generators.
 *
 * --max: as fast as the hub's subscriber connection drains (pauses while Redis holds more than 4 MB for it,
 *   read from CLIENT LIST every 10 ms), with the traffic mix chosen over IPC: {phase: 'mix' | 'market_data' |
 *   'orderbook' | 'trades' | 'idle'}.
 *
 * Stops on SIGTERM, IPC {cmd: 'stop'} or after --seconds; prints (and sends over IPC) the counts.
 */
import { Redis } from 'ioredis';
import { syntheticBook } from '../scripts/synthetic-book.ts';
import { parseCli } from '../src/cli.ts';
import { monotonicMs } from './common.ts';

const USAGE = `Usage: node bench/publisher.ts [options]   (started by bench/run.ts)
The benchmark's Redis publisher: realistic traffic, or --max as fast as the hub drains.

Options:
  --redis URL        Redis to publish on (default redis://127.0.0.1:6379)
  --symbols N        symbols (default 10)
  --rate N           market_data and books per symbol per second (default 10)
  --levels N         order book levels per side (default 200)
  --seconds N        how long to publish (default 600)
  --max              as fast as the hub's subscriber drains, mix chosen over IPC
  -h, --help         this help`;

const { values } = parseCli('bench-publisher', USAGE, {
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    symbols: { type: 'string', default: '10' },
    rate: { type: 'string', default: '10' },
    levels: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '600' },
    max: { type: 'boolean', default: false },
  },
});

const symbols = Array.from({ length: Number(values.symbols) }, (_, i) => `SYM${i}USDT`);
const rate = Number(values.rate);
const levels = Number(values.levels);
const redis = new Redis(values.redis!, { connectionName: 'bench:publisher' });
const counts: Record<string, number> = {};
const prices = new Map(symbols.map((symbol, i) => [symbol, 100 * (i + 1)]));
/** 24 h high/low (they move only when the price passes them) and volume (it grows with each trade). */
const highs = new Map(symbols.map((symbol) => [symbol, prices.get(symbol)! * 1.02]));
const lows = new Map(symbols.map((symbol) => [symbol, prices.get(symbol)! * 0.98]));
const volumes = new Map(symbols.map((symbol) => [symbol, 12_345.678]));
let orderSeq = 0;
let tradeSeq = 0;
let running = true;

function publish(channel: string, payload: string): Promise<unknown> {
  const topic = channel.slice(0, channel.indexOf(':'));
  counts[topic] = (counts[topic] ?? 0) + 1;
  return redis.publish(channel, payload);
}

function marketData(symbol: string): string {
  const price = prices.get(symbol)! * (1 + (Math.random() - 0.5) * 0.001);
  prices.set(symbol, price);
  return JSON.stringify({
    symbol,
    last_price: price.toFixed(2),
    bid_price: (price - 0.01).toFixed(2),
    ask_price: (price + 0.01).toFixed(2),
    volume_24h: Number(volumes.get(symbol)!.toFixed(3)),
    high_24h: Number(Math.max(highs.get(symbol)!, price).toFixed(2)),
    low_24h: Number(Math.min(lows.get(symbol)!, price).toFixed(2)),
    updated_at: Date.now(),
    sent_at: monotonicMs(),
  });
}

function orderbook(symbol: string): string {
  return JSON.stringify({
    symbol,
    ...syntheticBook(prices.get(symbol)!, levels),
    last_update_id: Date.now(),
    timestamp: Date.now() * 1000,
    initialized: true,
  });
}

function trade(symbol: string): string {
  const quantity = Math.random() * 2;
  volumes.set(symbol, volumes.get(symbol)! + quantity);
  return JSON.stringify({
    symbol,
    trade_id: ++tradeSeq,
    price: prices.get(symbol)!.toFixed(2),
    quantity: quantity.toFixed(4),
    timestamp: Date.now(),
    is_buyer_maker: Math.random() < 0.5,
  });
}

// ---- realistic mode ----

function tradeBurst(): void {
  for (const symbol of symbols) {
    const n = 5 + Math.floor(Math.random() * 15);
    for (let i = 0; i < n; i++) void publish(`trades:${symbol}`, trade(symbol));
  }
}

function orderLifecycle(): void {
  const id = `bench-${++orderSeq}`;
  const symbol = symbols[orderSeq % symbols.length];
  const base = {
    order_id: id,
    client_order_id: `c-${id}`,
    symbol,
    side: orderSeq % 2 ? 'BUY' : 'SELL',
    type: 'LIMIT',
    time_in_force: 'GTC',
    quantity: 1,
    price: prices.get(symbol)!.toFixed(2),
    created_at: Date.now(),
  };
  void publish(
    'orders:updates',
    JSON.stringify({
      order: { ...base, state: 'NEW', filled_quantity: 0, updated_at: Date.now() },
      update_type: 'NEW',
    }),
  );
  setTimeout(() => {
    if (!running) return;
    void publish(
      'orders:updates',
      JSON.stringify({ ...base, state: 'PARTIALLY_FILLED', filled_quantity: 0.5, updated_at: Date.now() }),
    );
  }, 300);
  setTimeout(() => {
    if (!running) return;
    void publish(
      'orders:updates',
      JSON.stringify({
        ...base,
        state: 'FILLED',
        filled_quantity: 1,
        average_price: Number(base.price),
        fee: 0.001,
        fee_asset: 'USDT',
        updated_at: Date.now(),
      }),
    );
  }, 600);
}

function accountPositionsStrategies(): void {
  void publish(
    'account:main',
    JSON.stringify({
      total_balance: (100_000 + Math.random() * 100).toFixed(2),
      available_balance: 90_000,
      margin_used: 10_000,
      unrealized_pnl: Number((Math.random() * 100).toFixed(2)),
      balances: { USDT: 90_000, BTC: 0.5 },
      updated_at: Date.now(),
    }),
  );
  const symbol = symbols[Math.floor(Math.random() * symbols.length)];
  void publish(
    'positions:updates',
    JSON.stringify({
      symbol,
      side: 'LONG',
      quantity: Math.random() < 0.2 ? 0 : Number((Math.random() * 3).toFixed(3)),
      entry_price: prices.get(symbol),
      mark_price: prices.get(symbol),
      unrealized_pnl: Number((Math.random() * 50).toFixed(2)),
      updated_at: Date.now(),
    }),
  );
  for (let id = 1; id <= 5; id++) {
    void publish(
      'strategies:updates',
      JSON.stringify({
        id: `strategy-${id}`,
        name: `Strategy ${id}`,
        status: 'running',
        pnl: Number((Math.random() * 1000).toFixed(2)),
        trades: 100 + id,
        win_rate: Number(Math.random().toFixed(3)),
        updated_at: Date.now(),
      }),
    );
  }
}

const timers: NodeJS.Timeout[] = [];

function startRealistic(): void {
  // Symbol updates spread evenly over each 1/rate interval: the hub's tick then waits 0..interval for them.
  const started = performance.now();
  let done = 0;
  timers.push(
    setInterval(() => {
      const due = Math.floor(((performance.now() - started) * rate * symbols.length) / 1000);
      // Bounded catch-up after a pause of this process.
      if (due - done > symbols.length * rate) done = due - symbols.length;
      while (done < due) {
        const symbol = symbols[done % symbols.length];
        void publish(`market_data:${symbol}`, marketData(symbol));
        void publish(`orderbook:${symbol}`, orderbook(symbol));
        done++;
      }
    }, 2),
    setInterval(tradeBurst, 2000),
    setInterval(orderLifecycle, 1000),
    setInterval(accountPositionsStrategies, 1000),
  );
  // A first round at once, so a state exists before any client connects.
  for (const symbol of symbols) {
    void publish(`market_data:${symbol}`, marketData(symbol));
    void publish(`orderbook:${symbol}`, orderbook(symbol));
  }
  tradeBurst();
  orderLifecycle();
  accountPositionsStrategies();
}

// ---- max mode ----

type Phase = 'mix' | 'market_data' | 'orderbook' | 'trades' | 'idle';
let phase: Phase = 'idle';
let paused = false;
let inflight = 0;
const PAUSE_ABOVE = 4 * 1024 * 1024;
const RESUME_BELOW = 1024 * 1024;
/** Pre-built full books: building one costs more than the hub's parse of it. */
const bookPool = new Map<string, string[]>();
/** The realistic proportions: per symbol and second 10 market_data, 10 books, ~6 trades. */
const MIX: Exclude<Phase, 'mix' | 'idle'>[] = [
  'market_data',
  'orderbook',
  'market_data',
  'orderbook',
  'market_data',
  'orderbook',
  'trades',
  'trades',
];
let cursor = 0;

function nextMessage(): [string, string] {
  const symbol = symbols[cursor % symbols.length];
  const kind = phase === 'mix' ? MIX[Math.floor(cursor / symbols.length) % MIX.length] : phase;
  cursor++;
  switch (kind) {
    case 'market_data':
      return [`market_data:${symbol}`, marketData(symbol)];
    case 'orderbook': {
      const pool = bookPool.get(symbol)!;
      return [`orderbook:${symbol}`, pool[cursor % pool.length]];
    }
    default:
      return [`trades:${symbol}`, trade(symbol)];
  }
}

async function watchSubscriberBuffer(): Promise<void> {
  const admin = new Redis(values.redis!, { connectionName: 'bench:publisher-admin' });
  while (running) {
    const list = (await admin.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
    let largest = 0;
    for (const match of list.matchAll(/omem=(\d+)/g)) largest = Math.max(largest, Number(match[1]));
    if (paused && largest < RESUME_BELOW) paused = false;
    else if (!paused && largest > PAUSE_ABOVE) paused = true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  admin.disconnect();
}

async function pump(): Promise<void> {
  const release = () => {
    inflight--;
  };
  while (running) {
    if (phase === 'idle' || paused || inflight > 4000) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    for (let i = 0; i < 256; i++) {
      const [channel, payload] = nextMessage();
      inflight++;
      publish(channel, payload).then(release, release);
    }
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function startMax(): void {
  for (const symbol of symbols) {
    bookPool.set(
      symbol,
      Array.from({ length: 8 }, () => orderbook(symbol)),
    );
  }
  void watchSubscriberBuffer();
  void pump();
}

function stop(): void {
  if (!running) return;
  running = false;
  for (const timer of timers) clearInterval(timer);
  setTimeout(async () => {
    await redis.quit().catch(() => {});
    const report = { published: counts };
    process.stdout.write(`${JSON.stringify(report)}\n`);
    if (process.send) process.send({ evt: 'stopped', ...report }, () => process.exit(0));
    else process.exit(0);
  }, 200);
}

process.on('message', (message: { cmd?: string; phase?: Phase }) => {
  if (message.cmd === 'stop') stop();
  if (message.phase) {
    phase = message.phase;
    process.send?.({ evt: 'phase', phase, published: { ...counts } });
  }
});
process.on('SIGTERM', stop);
setTimeout(stop, Number(values.seconds) * 1000).unref();

await redis.ping();
if (values.max) startMax();
else startRealistic();
process.send?.({ evt: 'ready' });
