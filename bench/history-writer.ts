/**
 * How many rows per second the history writer sustains, per kind (`npm run bench:history-writer -- [options]`):
 * in this process, on a scratch database it creates and drops, the rows of each kind are written the way
 * plugins/history.ts writes them (src/history/store.ts insertRows: multi-row INSERTs of INSERT_BATCH rows into the
 * day partitions). The rows are shaped like the recorder's, with distinct keys, timestamps spread over today.
 */
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { parseCli } from '../src/cli.ts';
import { HISTORY_KINDS, type HistoryKind, type HistoryRow } from '../src/history/rows.ts';
import { dayOf, ensurePartition, INSERT_BATCH, insertRows, migrate } from '../src/history/store.ts';

const USAGE = `Usage: npm run bench:history-writer -- [options]   (node bench/history-writer.ts)
Rows per second the history writer sustains, per kind, against a scratch PostgreSQL database.

Options:
  --postgres URL   PostgreSQL to create the scratch database on (default postgres://postgres@127.0.0.1:5432/postgres)
  --rows N         rows per kind (default 100000)
  --flush N        rows per flush, as queued between two writes (default 20000)
  -h, --help       this text`;

const { values } = parseCli('bench:history-writer', USAGE, {
  options: {
    postgres: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    rows: { type: 'string', default: '100000' },
    flush: { type: 'string', default: '20000' },
  },
});
const rowsPerKind = Number(values.rows);
const flushRows = Number(values.flush);
if (!(rowsPerKind >= 1000) || !(flushRows >= 1)) {
  process.stderr.write(
    `bench:history-writer: --rows must be at least 1000 and --flush at least 1\n${USAGE}\n`,
  );
  process.exit(2);
}

const day = dayOf(Date.now());
const at = (index: number) => new Date(day + (index % 86_400) * 1000 + Math.floor(index / 86_400));

function row(kind: HistoryKind, index: number): HistoryRow {
  const ts = at(index);
  const symbol = `SYM${index % 10}USDT`;
  switch (kind) {
    case 'market_data':
      return { ts, symbol, open: 100, high: 101, low: 99, close: 100.5, bid: 100.4, ask: 100.6, updates: 12 };
    case 'trades':
      return { ts, symbol, trade_id: `t${index}`, price: 100 + (index % 50), quantity: 0.01, side: 'BUY' };
    case 'fills':
      return {
        ts,
        symbol,
        fill_id: `f${index}`,
        order_id: `o${index}`,
        side: 'SELL',
        price: 100,
        quantity: 1,
        fee: 0.1,
        pnl: null,
      };
    case 'orders':
      return {
        ts,
        order_id: `o${index}`,
        symbol,
        state: 'FILLED',
        side: 'BUY',
        type: 'LIMIT',
        price: 100,
        quantity: 1,
        filled_quantity: 1,
        average_price: 100,
      };
    case 'account':
      return { ts: new Date(day + index), total_balance: 10_000, equity: 10_050, unrealized_pnl: 50 };
    case 'alerts':
      return {
        ts,
        id: `a${index}`,
        source: 'risk_manager',
        type: 'leverage',
        severity: 'WARNING',
        symbol: null,
        message: 'leverage above its limit',
        value: 12,
        threshold: 10,
      };
  }
}

const name = `dashboard_bench_writer_${process.pid}`;
const admin = postgres(values.postgres!, { max: 1, onnotice: () => {} });
await admin.unsafe(`CREATE DATABASE ${name}`);
const url = new URL(values.postgres!);
url.pathname = `/${name}`;
const sql = postgres(url.toString(), { max: 4, onnotice: () => {} });
const results: string[] = [];
try {
  await migrate(sql);
  for (const kind of HISTORY_KINDS) {
    await ensurePartition(sql, kind, day);
    const rows = Array.from({ length: rowsPerKind }, (_, index) => row(kind, index));
    const started = performance.now();
    for (let start = 0; start < rows.length; start += flushRows) {
      await insertRows(sql, kind, rows.slice(start, start + flushRows));
    }
    const seconds = (performance.now() - started) / 1000;
    results.push(
      `${kind.padEnd(12)} ${String(rowsPerKind).padStart(8)} ${seconds.toFixed(2).padStart(7)} ${Math.round(
        rowsPerKind / seconds,
      )
        .toString()
        .padStart(9)}`,
    );
  }
} finally {
  await sql.end();
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
process.stdout.write(
  `history writer, ${flushRows} rows per flush, ${INSERT_BATCH} per INSERT, Node ${process.version}\n` +
    `kind             rows       s    rows/s\n${results.join('\n')}\n`,
);
