/**
 * Ingest cost per message, in this process, without Redis: the hub's Ingest.handleMessage (src/ingest.ts) on the
 * payloads the bench publisher sends, against JSON.parse alone and against a one-pass order-book path (a
 * prototype here, not in the hub: for...in over each side, validate each level and keep the best N by insertion,
 * no Object.entries, no copy of the full book by withoutNulls, no typebox Record check of the full book).
 *   node bench/ingest-micro.ts
 */
import { Ingest } from '../src/ingest.ts';
import { StateStore } from '../src/state.ts';

const DECIMAL = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/;

function book(mid: number, levels: number) {
  const bids: Record<string, number> = {};
  const asks: Record<string, number> = {};
  for (let i = 1; i <= levels; i++) {
    bids[(mid - i * 0.01).toFixed(2)] = Number((Math.random() * 5).toFixed(3));
    asks[(mid + i * 0.01).toFixed(2)] = Number((Math.random() * 5).toFixed(3));
  }
  return { bids, asks };
}

/** The best `depth` levels of one side in one pass, validating every level like bestLevels does. */
function bestLevelsOnePass(
  side: Record<string, unknown>,
  depth: number,
  descending: boolean,
): [number, number][] {
  const prices: number[] = [];
  const quantities: number[] = [];
  for (const priceText in side) {
    const raw = side[priceText];
    const quantity =
      typeof raw === 'number' ? raw : typeof raw === 'string' && DECIMAL.test(raw) ? Number(raw) : Number.NaN;
    const price = Number(priceText);
    if (!DECIMAL.test(priceText) || !Number.isFinite(price)) throw new Error(`bad price ${priceText}`);
    if (Number.isNaN(quantity)) throw new Error(`bad quantity at ${priceText}`);
    if (!(quantity > 0)) continue;
    const full = prices.length === depth;
    if (full && (descending ? price <= prices[depth - 1] : price >= prices[depth - 1])) continue;
    let index = full ? depth - 1 : prices.length;
    while (index > 0 && (descending ? price > prices[index - 1] : price < prices[index - 1])) {
      prices[index] = prices[index - 1];
      quantities[index] = quantities[index - 1];
      index--;
    }
    prices[index] = price;
    quantities[index] = quantity;
  }
  return prices.map((price, i) => [price, quantities[i]]);
}

function onePassOrderbook(payload: Buffer, depth: number): object {
  const record = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  if (
    record.bids === null ||
    typeof record.bids !== 'object' ||
    record.asks === null ||
    typeof record.asks !== 'object'
  )
    throw new Error('bids and asks must be objects');
  const bids = bestLevelsOnePass(record.bids as Record<string, unknown>, depth, true);
  const asks = bestLevelsOnePass(record.asks as Record<string, unknown>, depth, false);
  return { ...record, bids, asks };
}

function perMessage(n: number, run: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 2000); i++) run(i);
  const started = performance.now();
  for (let i = 0; i < n; i++) run(i);
  return ((performance.now() - started) * 1000) / n;
}

const state = new StateStore();
const ingest = new Ingest(state, {
  orderbookDepth: 20,
  tradesKept: 50,
  terminalOrderRetention: 600_000,
  maxMessageSize: 1 << 20,
  maxSymbols: 1000,
});
const line = (label: string, us: number) =>
  process.stdout.write(
    `${label.padEnd(50)} ${us.toFixed(1).padStart(7)} µs/msg  ${Math.round(1e6 / us)
      .toLocaleString('en-US')
      .padStart(9)}/s per core\n`,
  );

for (const levels of [20, 200, 1000]) {
  const messages = Array.from({ length: 50 }, () =>
    Buffer.from(
      JSON.stringify({
        symbol: 'SYM0USDT',
        ...book(100, levels),
        last_update_id: 1,
        timestamp: 1,
        initialized: true,
      }),
    ),
  );
  const n = levels >= 1000 ? 1000 : 5000;
  line(
    `orderbook ${levels} levels/side (${messages[0].length} B): hub`,
    perMessage(n, (i) => {
      ingest.handleMessage('orderbook:SYM0USDT', messages[i % 50]);
    }),
  );
  state.trimJournal(state.sequence);
  line(
    '  JSON.parse alone',
    perMessage(n, (i) => JSON.parse(messages[i % 50].toString('utf8'))),
  );
  line(
    '  one-pass prototype (parse + validate + top 20)',
    perMessage(n, (i) => onePassOrderbook(messages[i % 50], 20)),
  );
}
const marketData = Array.from({ length: 50 }, (_, i) =>
  Buffer.from(
    JSON.stringify({
      symbol: 'SYM1USDT',
      last_price: (100 + i / 100).toFixed(2),
      bid_price: '99.99',
      ask_price: '100.01',
      volume_24h: 12345.678,
      high_24h: 102,
      low_24h: 98,
      updated_at: Date.now(),
      sent_at: 12345.678,
    }),
  ),
);
line(
  `market_data (${marketData[0].length} B): hub`,
  perMessage(100_000, (i) => {
    ingest.handleMessage('market_data:SYM1USDT', marketData[i % 50]);
  }),
);
state.trimJournal(state.sequence);
let tradeId = 0;
const trades = Array.from({ length: 60_000 }, () =>
  Buffer.from(
    `{"symbol":"SYM2USDT","trade_id":${++tradeId},"price":"100.12","quantity":"0.1234","timestamp":${Date.now()},"is_buyer_maker":true}`,
  ),
);
line(
  'trades: hub',
  perMessage(50_000, (i) => {
    ingest.handleMessage('trades:SYM2USDT', trades[i + 2000 < trades.length ? i + 2000 : i]);
  }),
);
