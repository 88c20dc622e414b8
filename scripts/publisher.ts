/**
 * Replays realistic backend traffic into Redis, as the trading system's publishers would:
 *   node scripts/publisher.ts --redis redis://127.0.0.1:6379 [--symbols 4] [--rate 10] [--seconds 60] [--levels 200]
 * Per symbol: `market_data` and a full `orderbook` (`--levels` per side) `--rate` times a second, a burst of trades
 * every 2 s; an order lifecycle (NEW → PARTIALLY_FILLED → FILLED) every second; account and positions once a
 * second. Every market_data message carries `sent_at` (ms) so receivers can measure latency. Prints a JSON
 * line of counts when done; stops on SIGTERM too.
 */
import { Redis } from 'ioredis';
import { parseCli } from '../src/cli.ts';
import { syntheticBook } from './synthetic-book.ts';

const USAGE = `Usage: node scripts/publisher.ts [options]
Replays realistic backend traffic into Redis; prints a JSON line of counts when done (or on SIGTERM).

Options:
  --redis URL        Redis to publish on (default redis://127.0.0.1:6379)
  --symbols N        symbols SYM0USDT… (default 4)
  --rate N           market_data and order books per symbol per second (default 10)
  --seconds N        how long to publish (default 60)
  --levels N         order book levels per side (default 200)
  -h, --help         this help`;

const { values } = parseCli('publisher', USAGE, {
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    symbols: { type: 'string', default: '4' },
    rate: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '60' },
    levels: { type: 'string', default: '200' },
  },
});

const symbols = Array.from({ length: Number(values.symbols) }, (_, i) => `SYM${i}USDT`);
const rate = Number(values.rate);
const levels = Number(values.levels);
const redis = new Redis(values.redis!);
const counts: Record<string, number> = {};
const prices = new Map(symbols.map((symbol, i) => [symbol, 100 * (i + 1)]));
let orderSeq = 0;
let tradeSeq = 0;

function publish(channel: string, payload: object): void {
  const topic = channel.slice(0, channel.indexOf(':'));
  counts[topic] = (counts[topic] ?? 0) + 1;
  void redis.publish(channel, JSON.stringify(payload));
}

function tickMarket(): void {
  for (const symbol of symbols) {
    const price = prices.get(symbol)! * (1 + (Math.random() - 0.5) * 0.001);
    prices.set(symbol, price);
    publish(`market_data:${symbol}`, {
      symbol,
      last_price: price.toFixed(2),
      bid_price: (price - 0.01).toFixed(2),
      ask_price: (price + 0.01).toFixed(2),
      volume_24h: 12345.678,
      updated_at: Date.now(),
      sent_at: Date.now(),
    });
    publish(`orderbook:${symbol}`, {
      symbol,
      ...syntheticBook(price, levels),
      last_update_id: Date.now(),
      timestamp: Date.now() * 1000,
      initialized: true,
    });
  }
}

function tradeBurst(): void {
  for (const symbol of symbols) {
    const n = 5 + Math.floor(Math.random() * 15);
    for (let i = 0; i < n; i++) {
      publish(`trades:${symbol}`, {
        symbol,
        trade_id: ++tradeSeq,
        price: prices.get(symbol)!.toFixed(2),
        quantity: (Math.random() * 2).toFixed(4),
        timestamp: Date.now(),
        is_buyer_maker: Math.random() < 0.5,
      });
    }
  }
}

function orderLifecycle(): void {
  const id = `soak-${++orderSeq}`;
  const symbol = symbols[orderSeq % symbols.length];
  const base = {
    order_id: id,
    symbol,
    side: 'BUY',
    type: 'LIMIT',
    quantity: 1,
    price: prices.get(symbol)!.toFixed(2),
  };
  publish('orders:updates', {
    order: { ...base, state: 'NEW', filled_quantity: 0, updated_at: Date.now() },
    update_type: 'NEW',
  });
  setTimeout(
    () =>
      publish('orders:updates', {
        ...base,
        state: 'PARTIALLY_FILLED',
        filled_quantity: 0.5,
        updated_at: Date.now(),
      }),
    300,
  );
  setTimeout(
    () => publish('orders:updates', { ...base, state: 'FILLED', filled_quantity: 1, updated_at: Date.now() }),
    600,
  );
}

function accountAndPositions(): void {
  publish('account:main', {
    total_balance: (100_000 + Math.random() * 100).toFixed(2),
    available_balance: 90_000,
    margin_used: 10_000,
    balances: { USDT: 90_000, BTC: 0.5 },
    updated_at: Date.now(),
  });
  const symbol = symbols[Math.floor(Math.random() * symbols.length)];
  publish('positions:updates', {
    symbol,
    side: 'LONG',
    quantity: Math.random() < 0.2 ? 0 : Number((Math.random() * 3).toFixed(3)),
    entry_price: prices.get(symbol),
    mark_price: prices.get(symbol),
    updated_at: Date.now(),
  });
}

const timers = [
  setInterval(tickMarket, 1000 / rate),
  setInterval(tradeBurst, 2000),
  setInterval(orderLifecycle, 1000),
  setInterval(accountAndPositions, 1000),
];
function stop(): void {
  for (const timer of timers) clearInterval(timer);
  // Let the lifecycle timeouts of the last orders run out, then flush and report.
  setTimeout(async () => {
    await redis.quit();
    process.stdout.write(`${JSON.stringify({ published: counts })}\n`);
    process.exit(0);
  }, 700);
}
setTimeout(stop, Number(values.seconds) * 1000);
process.on('SIGTERM', stop);
