/**
 * Ingest cost per message, in this process, without Redis: the hub's Ingest.handleMessage (src/ingest/) on the
 * payloads the bench publisher sends, against JSON.parse alone (the floor: every path parses the whole book).
 * Each row is the median of several rounds, which matters on a shared, noisy machine.
 *   node bench/ingest-micro.ts
 *   node bench/ingest-micro.ts --before /tmp/old/src/ingest/ingest.ts
 * `--before` loads another version of the Ingest module (src/ingest/ingest.ts, or src/ingest.ts before the split;
 * e.g. from `git archive HEAD src`, with a node_modules link next to its src) and measures it in the same
 * process, its rounds interleaved with the hub's, so that both see the same load.
 */
import { syntheticBook } from '../scripts/synthetic-book.ts';
import { parseCli } from '../src/cli.ts';
import * as current from '../src/ingest/ingest.ts';
import { StateStore } from '../src/state.ts';

const ROUNDS = 9;

interface Subject {
  label: string;
  ingest: { handleMessage(channel: string, payload: Buffer): void };
  state: { sequence: number; trimJournal(sequence: number): void };
}

const ingestOptions = {
  orderbookDepth: 20,
  tradesKept: 50,
  terminalOrderRetention: 600_000,
  maxMessageSize: 1 << 20,
  maxSymbols: 1000,
  // The shipped limits (config.yaml), so the checks they cost are measured; an older Ingest ignores them.
  symbolIdleTtl: 3_600_000,
  maxRecordSize: 16 * 1024,
  maxEntries: 10_000,
  maxStateSize: 32 * 1024 * 1024,
};

function subject(label: string, module: typeof current, State: typeof StateStore): Subject {
  const state = new State();
  return { label, ingest: new module.Ingest(state, ingestOptions), state };
}

const USAGE = `Usage: node bench/ingest-micro.ts [--before FILE]
Ingest cost per message in this process, without Redis, against JSON.parse alone.

Options:
  --before FILE      another version of the ingest module to measure side by side
  -h, --help         this help`;

const { values } = parseCli('ingest-micro', USAGE, { options: { before: { type: 'string' } } });
const subjects = [subject('hub', current, StateStore)];
if (values.before) {
  const beforeUrl = new URL(values.before, `file://${process.cwd()}/`);
  const before = (await import(beforeUrl.href)) as typeof current;
  // src/state.ts, beside src/ingest.ts or above src/ingest/ingest.ts.
  const statePath = beforeUrl.pathname.endsWith('/ingest/ingest.ts') ? '../state.ts' : './state.ts';
  const beforeState = (await import(new URL(statePath, beforeUrl).href)) as {
    StateStore: typeof StateStore;
  };
  subjects.push(subject('before', before, beforeState.StateStore));
}

/** µs per call of `run` over `n` calls. */
function perMessage(n: number, run: (i: number) => void): number {
  const started = performance.now();
  for (let i = 0; i < n; i++) run(i);
  return ((performance.now() - started) * 1000) / n;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const line = (label: string, us: number[]) =>
  process.stdout.write(
    `${label.padEnd(48)} ${median(us).toFixed(1).padStart(7)} µs/msg  ${Math.round(1e6 / median(us))
      .toLocaleString('en-US')
      .padStart(9)}/s per core  (rounds ${Math.min(...us).toFixed(1)}–${Math.max(...us).toFixed(1)})\n`,
  );

/**
 * Sends `messages` on `channel` to every subject, `n` per round, rounds interleaved between subjects after a
 * warm-up; prints each subject's median. `pick` chooses the message of call `i`.
 */
function measure(
  title: string,
  channel: string,
  messages: Buffer[],
  n: number,
  pick: (i: number) => number = (i) => i % messages.length,
): void {
  const rounds = new Map<Subject, number[]>(subjects.map((s) => [s, []]));
  for (const s of subjects) {
    for (let i = 0; i < Math.min(n, 2000); i++) s.ingest.handleMessage(channel, messages[pick(i)]);
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const s of subjects) {
      rounds.get(s)?.push(perMessage(n, (i) => s.ingest.handleMessage(channel, messages[pick(i)])));
      s.state.trimJournal(s.state.sequence);
    }
  }
  for (const s of subjects) line(`${title}: ${s.label}`, rounds.get(s) ?? []);
}

process.stdout.write(`medians of ${ROUNDS} rounds; orderbook depth ${ingestOptions.orderbookDepth}\n`);
for (const levels of [20, 200, 1000]) {
  const messages = Array.from({ length: 50 }, () =>
    Buffer.from(
      JSON.stringify({
        symbol: 'SYM0USDT',
        ...syntheticBook(100, levels),
        last_update_id: 1,
        timestamp: 1,
        initialized: true,
      }),
    ),
  );
  const n = levels >= 1000 ? 300 : levels >= 200 ? 1500 : 5000;
  measure(`orderbook ${levels} levels/side (${messages[0].length} B)`, 'orderbook:SYM0USDT', messages, n);
  const parseRounds = Array.from({ length: ROUNDS }, () =>
    perMessage(n, (i) => JSON.parse(messages[i % 50].toString('utf8'))),
  );
  line('  JSON.parse alone', parseRounds);
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
measure(`market_data (${marketData[0].length} B)`, 'market_data:SYM1USDT', marketData, 20_000);

// Every trade once per subject: a repeated trade_id would measure the duplicate path instead.
const tradesPerRound = 5_000;
let tradeId = 0;
const trades = Array.from({ length: tradesPerRound * (ROUNDS + 1) * subjects.length }, () =>
  Buffer.from(
    `{"symbol":"SYM2USDT","trade_id":${++tradeId},"price":"100.12","quantity":"0.1234","timestamp":${Date.now()},"is_buyer_maker":true}`,
  ),
);
let nextTrade = 0;
measure('trades', 'trades:SYM2USDT', trades, tradesPerRound, () => nextTrade++ % trades.length);
