/**
 * The history tables and queries (src/history/store.ts, src/history/queries.ts): the pure parts (migration files,
 * days, partition names, cursors), then against the real PostgreSQL at 127.0.0.1:5432 (trust auth, user
 * `postgres`), each suite on a database of its own (`dashboard_unit_<random>`), dropped WITH (FORCE) after.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import postgres, { type Sql } from 'postgres';
import { candles, decodeCursor, encodeCursor, equity, type Page, page } from '../../src/history/queries.ts';
import { HISTORY_KINDS, type HistoryKind, type HistoryRow, TABLES } from '../../src/history/rows.ts';
import {
  dayOf,
  dropPartitionsBefore,
  ensurePartition,
  INSERT_BATCH,
  insertRows,
  migrate,
  migrations,
  partitionName,
} from '../../src/history/store.ts';

const SERVER = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432';
const DAY = 86_400_000;
/** 2026-03-01T12:00:00Z. */
const T = Date.parse('2026-03-01T12:00:00Z');
const D = dayOf(T);

const connect = (url: string, max = 2): Sql =>
  postgres(url, { max, onnotice: () => {}, connection: { application_name: 'dashboard-unit-test' } });

/** A database of its own on the test server; `drop` ends every client given by `client` and drops it. */
async function createDatabase() {
  const admin = connect(`${SERVER}/postgres`, 1);
  const name = `dashboard_unit_${randomBytes(6).toString('hex')}`;
  // Hex digits only: safe as an identifier.
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = `${SERVER}/${name}`;
  const clients: Sql[] = [];
  return {
    name,
    client(max = 2): Sql {
      const sql = connect(url, max);
      clients.push(sql);
      return sql;
    },
    async drop(): Promise<void> {
      await Promise.all(clients.map((sql) => sql.end({ timeout: 1 })));
      try {
        await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end({ timeout: 1 });
      }
    },
  };
}
type Database = Awaited<ReturnType<typeof createDatabase>>;

async function partitionsOf(sql: Sql, table: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT c.relname AS name FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname = ${table} ORDER BY 1`;
  return rows.map((row) => row.name);
}

async function count(sql: Sql, kind: HistoryKind): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::integer AS n FROM ${sql(TABLES[kind].table)}`;
  return row.n;
}

/** Inserts rows after creating the day partitions they need, as the history plugin does. */
async function insert(sql: Sql, kind: HistoryKind, rows: HistoryRow[]): Promise<void> {
  for (const day of new Set(rows.map((row) => dayOf(row.ts.getTime()))))
    await ensurePartition(sql, kind, day);
  await insertRows(sql, kind, rows);
}

describe('history store: pure parts', () => {
  test('migrations(): the numbered SQL files of the folder, sorted, versions from their names', () => {
    const files = readdirSync(new URL('../../src/history/migrations/', import.meta.url))
      .filter((name) => /^[0-9]{4}_[a-z0-9_]+\.sql$/.test(name))
      .sort();
    const list = migrations();
    assert.ok(list.length >= 1);
    assert.deepEqual(
      list.map((m) => m.name),
      files,
    );
    assert.equal(list[0].name, '0001_tables.sql');
    assert.equal(list[0].version, 1);
    for (const [index, migration] of list.entries()) {
      assert.equal(migration.version, Number(migration.name.slice(0, 4)));
      if (index > 0) assert.ok(migration.version > list[index - 1].version, 'versions not increasing');
      assert.ok(migration.sql.length > 0);
    }
    for (const { table } of Object.values(TABLES))
      assert.match(list[0].sql, new RegExp(`CREATE TABLE IF NOT EXISTS ${table} `));
  });

  test('dayOf: the first millisecond of the UTC day', () => {
    const day = Date.UTC(2026, 11, 3);
    assert.equal(dayOf(day), day);
    assert.equal(dayOf(day + 1), day);
    assert.equal(dayOf(day + DAY - 1), day);
    assert.equal(dayOf(day + DAY), day + DAY);
    assert.equal(dayOf(Date.parse('2026-12-03T23:30:00-05:00')), Date.UTC(2026, 11, 4));
    assert.equal(dayOf(0), 0);
  });

  test('partitionName: the table and its UTC day, history_trades_p20261203', () => {
    const day = Date.UTC(2026, 11, 3);
    assert.equal(partitionName('trades', day), 'history_trades_p20261203');
    assert.equal(partitionName('orders', day), 'history_order_events_p20261203');
    assert.equal(partitionName('market_data', Date.UTC(2027, 0, 9)), 'history_market_data_p20270109');
    for (const kind of HISTORY_KINDS)
      assert.equal(partitionName(kind, Date.UTC(2026, 1, 28)), `${TABLES[kind].table}_p20260228`);
  });
});

describe('history cursors', () => {
  test('encodeCursor and decodeCursor round trip, each kind with its keys', () => {
    const trade = { ts: new Date('2026-03-01T12:00:00.123Z'), keys: ['BTCUSDT', 'trade-42/é"'] };
    const text = encodeCursor(trade);
    assert.match(text, /^[A-Za-z0-9_-]+$/, 'not URL-safe base64');
    assert.deepEqual(decodeCursor(text, 'trades'), trade);
    const order = { ts: new Date('2026-03-01T12:00:00Z'), keys: ['o-1', 2, 0.5, 'PARTIALLY_FILLED'] };
    assert.deepEqual(decodeCursor(encodeCursor(order), 'orders'), order);
    // A trades cursor is no alerts cursor: its keys do not fit.
    assert.equal(decodeCursor(text, 'alerts'), undefined);
  });

  test('decodeCursor refuses what this service did not make', () => {
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const cases: [string, string][] = [
      ['x', 'garbage'],
      ['', 'empty'],
      [Buffer.from('not json at all').toString('base64url'), 'base64 of non-JSON'],
      [b64({ ts: '2026-03-01T12:00:00Z', id: 'a' }), 'an object'],
      [b64(['2026-03-01T12:00:00Z']), 'one item'],
      [b64(['2026-03-01T12:00:00Z', 'a', 'b']), 'three items'],
      [b64([1_772_366_400_000, 'a']), 'a number for the time'],
      [b64(['2026-03-01T12:00:00Z', { a: 1 }]), 'an object for the key'],
      [b64(['2026-03-01T12:00:00Z', null]), 'null for the key'],
      [b64(['yesterday', 'a']), 'a time that is none'],
      [b64(null), 'null'],
      [b64('2026-03-01T12:00:00Z'), 'a string'],
    ];
    for (const [text, what] of cases) assert.equal(decodeCursor(text, 'alerts'), undefined, what);
  });
});

describe('history store on PostgreSQL: migrations', () => {
  let database: Database;
  before(async () => {
    database = await createDatabase();
  });
  after(() => database?.drop());

  test('migrate applies each migration once; a second call applies nothing', async () => {
    const sql = database.client();
    assert.deepEqual(await migrate(sql), ['0001_tables.sql']);
    assert.deepEqual(await migrate(sql), []);
    const recorded = await sql<{ version: number; name: string }[]>`
      SELECT version, name FROM history_migrations ORDER BY version`;
    assert.deepEqual(
      recorded.map((r) => ({ ...r })),
      [{ version: 1, name: '0001_tables.sql' }],
    );
    // Every table is there, partitioned by range.
    const partitioned = await sql<{ name: string; strategy: string }[]>`
      SELECT c.relname AS name, p.partstrat AS strategy FROM pg_partitioned_table p
      JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1`;
    assert.deepEqual(
      partitioned.map((r) => [r.name, r.strategy]),
      Object.values(TABLES)
        .map((t) => [t.table, 'r'])
        .sort(),
    );
  });
});

describe('history store on PostgreSQL: migrations by two hubs at the same moment', () => {
  let database: Database;
  before(async () => {
    database = await createDatabase();
  });
  after(() => database?.drop());

  test('both succeed and the migration is recorded once (the advisory lock)', async () => {
    const clients = [database.client(1), database.client(1), database.client(1)];
    // Connected first, so the migrations start together.
    await Promise.all(clients.map((sql) => sql`SELECT 1`));
    const results = await Promise.all(clients.map((sql) => migrate(sql)));
    assert.deepEqual(results.flat(), ['0001_tables.sql'], JSON.stringify(results));
    const [{ n }] = await clients[0]<{ n: number }[]>`SELECT count(*)::integer AS n FROM history_migrations`;
    assert.equal(n, 1);
  });
});

describe('history store on PostgreSQL: partitions and inserts', () => {
  let database: Database;
  let sql: Sql;
  before(async () => {
    database = await createDatabase();
    sql = database.client();
    await migrate(sql);
  });
  after(() => database?.drop());

  test('ensurePartition creates the day partition once; it holds that UTC day and no other', async () => {
    const day = Date.UTC(2026, 11, 3);
    await ensurePartition(sql, 'trades', day);
    await ensurePartition(sql, 'trades', day);
    assert.deepEqual(await partitionsOf(sql, 'history_trades'), ['history_trades_p20261203']);
    const trade = (ms: number, id: string): HistoryRow => ({
      ts: new Date(ms),
      symbol: 'BTCUSDT',
      trade_id: id,
      price: 1,
      quantity: 1,
      side: null,
    });
    await insertRows(sql, 'trades', [trade(day, 'first'), trade(day + DAY - 1, 'last')]);
    assert.equal(await count(sql, 'trades'), 2);
    await assert.rejects(insertRows(sql, 'trades', [trade(day + DAY, 'next day')]), /no partition/);
    await assert.rejects(insertRows(sql, 'trades', [trade(day - 1, 'day before')]), /no partition/);
  });

  test('insertRows: every column as given; a row inserted twice stays once, as first written', async () => {
    const fill: HistoryRow = {
      ts: new Date(T + 123),
      symbol: 'BTCUSDT',
      fill_id: 'f1',
      order_id: null,
      side: 'BUY',
      price: 97000.5,
      quantity: 0.001,
      fee: null,
      pnl: -1.25,
    };
    await insert(sql, 'fills', [fill]);
    await insert(sql, 'fills', [
      { ...fill, price: 1 },
      { ...fill, fill_id: 'f2' },
    ]);
    await insert(sql, 'fills', [fill]);
    const rows = await sql<Record<string, unknown>[]>`SELECT * FROM history_fills ORDER BY fill_id`;
    assert.deepEqual(
      rows.map((r) => ({ ...r })),
      [fill, { ...fill, fill_id: 'f2' }],
    );
  });

  test('insertRows writes more rows than one INSERT takes, in batches', async () => {
    const total = 2 * INSERT_BATCH + 7;
    // 9 columns: one INSERT of them all would pass PostgreSQL's 65535 parameters.
    assert.ok(total * TABLES.market_data.columns.length > 65_535);
    const start = D;
    const rows: HistoryRow[] = Array.from({ length: total }, (_, i) => ({
      ts: new Date(start + i * 1000),
      symbol: 'BATCH',
      open: i,
      high: i + 1,
      low: i - 1,
      close: i + 0.5,
      bid: null,
      ask: i % 2 === 0 ? i : null,
      updates: 1,
    }));
    await insert(sql, 'market_data', rows);
    const [summary] = await sql<{ n: number; first: number; last: number }[]>`
      SELECT count(*)::integer AS n, min(open) AS first, max(open) AS last
      FROM history_market_data WHERE symbol = 'BATCH'`;
    assert.deepEqual({ ...summary }, { n: total, first: 0, last: total - 1 });
    // Again: every row is already there, nothing is added and nothing fails.
    await insertRows(sql, 'market_data', rows);
    assert.equal(await count(sql, 'market_data'), total);
  });

  test('insertRows of no rows does nothing', async () => {
    const before = await count(sql, 'alerts');
    await insertRows(sql, 'alerts', []);
    assert.equal(await count(sql, 'alerts'), before);
  });

  test('dropPartitionsBefore drops only the partitions that ended before the time given', async () => {
    const day = Date.UTC(2025, 5, 10);
    for (const offset of [-2, -1, 0, 1]) {
      await ensurePartition(sql, 'alerts', day + offset * DAY);
      await ensurePartition(sql, 'account', day + offset * DAY);
    }
    await insertRows(sql, 'account', [
      { ts: new Date(day - 2 * DAY + 5), total_balance: 1, equity: 1, unrealized_pnl: 0 },
      { ts: new Date(day + 5), total_balance: 2, equity: 2, unrealized_pnl: 0 },
    ]);
    // The day before `day` ends at `day`: over. The partitions of other days and other tables stay.
    const tradesBefore = await partitionsOf(sql, 'history_trades');
    const marketBefore = await partitionsOf(sql, 'history_market_data');
    assert.deepEqual((await dropPartitionsBefore(sql, day - 1)).sort(), [
      'history_account_p20250608',
      'history_alerts_p20250608',
    ]);
    assert.deepEqual((await dropPartitionsBefore(sql, day + DAY - 1)).sort(), [
      'history_account_p20250609',
      'history_alerts_p20250609',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'history_alerts'), [
      'history_alerts_p20250610',
      'history_alerts_p20250611',
    ]);
    assert.deepEqual(await partitionsOf(sql, 'history_account'), [
      'history_account_p20250610',
      'history_account_p20250611',
    ]);
    // The rows of a dropped day went with it; the others stay.
    const left = await sql<{ total_balance: number }[]>`SELECT total_balance FROM history_account`;
    assert.deepEqual(
      left.map((r) => r.total_balance),
      [2],
    );
    // Nothing more before them; the partitions of the other tests (2026) are later and stay.
    assert.deepEqual(await dropPartitionsBefore(sql, day - 1), []);
    assert.deepEqual(await partitionsOf(sql, 'history_trades'), tradesBefore);
    assert.deepEqual(await partitionsOf(sql, 'history_market_data'), marketBefore);
    // At the very end of `day`, it goes too.
    assert.deepEqual((await dropPartitionsBefore(sql, day + DAY)).sort(), [
      'history_account_p20250610',
      'history_alerts_p20250610',
    ]);
  });
});

describe('history queries on PostgreSQL', () => {
  let database: Database;
  let sql: Sql;
  before(async () => {
    database = await createDatabase();
    sql = database.client();
    await migrate(sql);
  });
  after(() => database?.drop());

  const range = { from: new Date(D), to: new Date(D + DAY) };

  /** Every page of `kind`, newest page first, following next_before to the end. */
  async function allPages(
    kind: HistoryKind,
    query: { limit: number; where?: Record<string, string>; from?: Date; to?: Date },
  ): Promise<Page[]> {
    const pages: Page[] = [];
    let before: string | null | undefined;
    do {
      const cursor = before ? decodeCursor(before, kind) : undefined;
      if (before) assert.ok(cursor, `next_before ${before} does not decode`);
      const result = await page(sql, kind, {
        ...range,
        ...query,
        where: query.where ?? {},
        before: cursor,
      });
      pages.push(result);
      before = result.next_before;
      assert.ok(pages.length < 100, 'pagination does not end');
    } while (before);
    return pages;
  }

  test('page: trades newest page first, rows oldest first, next_before until the end, then null', async () => {
    const trade = (ms: number, id: string, symbol = 'BTCUSDT'): HistoryRow => ({
      ts: new Date(ms),
      symbol,
      trade_id: id,
      price: 100,
      quantity: 1,
      side: 'BUY',
    });
    // Seven trades, two of them at the same millisecond; other symbols; one outside the range.
    await insert(sql, 'trades', [
      trade(T + 1000, 't1'),
      trade(T + 2000, 't2'),
      trade(T + 3000, 't3a'),
      trade(T + 3000, 't3b'),
      trade(T + 4000, 't4'),
      trade(T + 5000, 't5'),
      trade(T + 6000, 't6'),
      trade(T + 2500, 'e1', 'ETHUSDT'),
      trade(D + DAY + 1, 'tomorrow'),
    ]);
    const pages = await allPages('trades', { limit: 3, where: { symbol: 'BTCUSDT' } });
    assert.deepEqual(
      pages.map((p) => p.rows.map((r) => r.trade_id)),
      [['t4', 't5', 't6'], ['t2', 't3a', 't3b'], ['t1']],
    );
    assert.equal(pages[2].next_before, null);
    assert.notEqual(pages[0].next_before, null);
    // The cursor is the ts and keys of the oldest row of the page.
    assert.deepEqual(decodeCursor(pages[0].next_before!, 'trades'), {
      ts: new Date(T + 4000),
      keys: ['BTCUSDT', 't4'],
    });
    assert.deepEqual(pages[0].rows[0], {
      ts: new Date(T + 4000).toISOString(),
      symbol: 'BTCUSDT',
      trade_id: 't4',
      price: 100,
      quantity: 1,
      side: 'BUY',
    });
  });

  test('page: a last page exactly full gives a cursor, and the page after it is empty with null', async () => {
    const pages = await allPages('trades', { limit: 7, where: { symbol: 'BTCUSDT' } });
    assert.deepEqual(
      pages.map((p) => [p.rows.length, p.next_before === null]),
      [
        [7, false],
        [0, true],
      ],
    );
  });

  test('page: from is inclusive, to exclusive; filters are all applied', async () => {
    const result = await page(sql, 'trades', {
      from: new Date(T + 2000),
      to: new Date(T + 4000),
      limit: 100,
      where: { symbol: 'BTCUSDT' },
    });
    assert.deepEqual(
      result.rows.map((r) => r.trade_id),
      ['t2', 't3a', 't3b'],
    );
    assert.equal(result.next_before, null);
    const all = await page(sql, 'trades', { ...range, limit: 100, where: {} });
    assert.deepEqual(
      all.rows.map((r) => r.trade_id),
      ['t1', 't2', 'e1', 't3a', 't3b', 't4', 't5', 't6'],
    );
    const eth = await page(sql, 'trades', { ...range, limit: 100, where: { symbol: 'ETHUSDT' } });
    assert.deepEqual(
      eth.rows.map((r) => r.trade_id),
      ['e1'],
    );
  });

  test('page: order events filtered by symbol and state; alerts by severity', async () => {
    const event = (ms: number, id: string, symbol: string, state: string, filled = 0): HistoryRow => ({
      ts: new Date(ms),
      order_id: id,
      symbol,
      state,
      side: 'BUY',
      type: 'LIMIT',
      price: 100,
      quantity: 2,
      filled_quantity: filled,
      average_price: null,
    });
    await insert(sql, 'orders', [
      event(T + 1, 'o1', 'BTCUSDT', 'NEW'),
      event(T + 2, 'o1', 'BTCUSDT', 'FILLED', 2),
      event(T + 3, 'o2', 'ETHUSDT', 'NEW'),
      event(T + 4, 'o3', 'BTCUSDT', 'NEW'),
      event(T + 5, 'o2', 'ETHUSDT', 'CANCELED'),
    ]);
    const ids = (p: Page) => p.rows.map((r) => `${r.order_id}:${r.state}`);
    assert.deepEqual(ids(await page(sql, 'orders', { ...range, limit: 10, where: { symbol: 'BTCUSDT' } })), [
      'o1:NEW',
      'o1:FILLED',
      'o3:NEW',
    ]);
    assert.deepEqual(ids(await page(sql, 'orders', { ...range, limit: 10, where: { state: 'NEW' } })), [
      'o1:NEW',
      'o2:NEW',
      'o3:NEW',
    ]);
    assert.deepEqual(
      ids(await page(sql, 'orders', { ...range, limit: 10, where: { symbol: 'BTCUSDT', state: 'NEW' } })),
      ['o1:NEW', 'o3:NEW'],
    );
    const alert = (ms: number, id: string, severity: string): HistoryRow => ({
      ts: new Date(ms),
      id,
      source: 'risk_manager',
      type: 'leverage',
      severity,
      symbol: null,
      message: 'm',
      value: 12.5,
      threshold: 10,
    });
    await insert(sql, 'alerts', [
      alert(T + 1, 'a1', 'WARNING'),
      alert(T + 2, 'a2', 'CRITICAL'),
      alert(T + 3, 'a3', 'WARNING'),
    ]);
    const warnings = await allPages('alerts', { limit: 1, where: { severity: 'WARNING' } });
    assert.deepEqual(
      warnings.map((p) => p.rows.map((r) => r.id)),
      [['a3'], ['a1'], []],
    );
  });

  test('page: order events of one order at the same time are all reached across pages', {}, async () => {
    // An order placed and filled in the same millisecond (a market order): ingest keeps both (isStaleOrder ranks
    // FILLED after NEW at the same instant), the recorder writes two events with one (ts, order_id).
    const event = (state: string, filled: number): HistoryRow => ({
      ts: new Date(T + 10_000),
      order_id: 'same-ms',
      symbol: 'SOLUSDT',
      state,
      side: 'BUY',
      type: 'MARKET',
      price: null,
      quantity: 1,
      filled_quantity: filled,
      average_price: null,
    });
    await insert(sql, 'orders', [event('NEW', 0), event('FILLED', 1)]);
    const pages = await allPages('orders', { limit: 1, where: { symbol: 'SOLUSDT' } });
    assert.deepEqual(pages.flatMap((p) => p.rows.map((r) => r.state)).sort(), ['FILLED', 'NEW']);
  });

  test('candles: date_bin buckets, first open, max high, min low, last close, sum of updates, last bid/ask', async () => {
    const second = (
      ms: number,
      open: number,
      high: number,
      low: number,
      close: number,
      bid: number | null,
      ask: number | null,
      updates: number,
    ): HistoryRow => ({ ts: new Date(ms), symbol: 'CANDLE', open, high, low, close, bid, ask, updates });
    const minute = D + 12 * 3_600_000; // 12:00:00
    await insert(sql, 'market_data', [
      // Inserted out of order: the order of ts decides.
      second(minute + 30_000, 12, 15, 11, 14, null, 14.5, 3),
      second(minute, 10, 11, 9, 10.5, 10.4, 10.6, 2),
      second(minute + 59_000, 14, 14, 8, 9, null, null, 1),
      second(minute + 1000, 10.5, 12, 10, 12, 11.9, null, 4),
      // The next minute: no bid at all.
      second(minute + 60_000, 20, 21, 19, 20.5, null, 20.6, 5),
      // Another symbol, and a second just past the range.
      { ...second(minute + 2000, 1000, 1000, 1000, 1000, 1, 1, 99), symbol: 'OTHER' },
      second(minute + 120_000, 30, 30, 30, 30, 30, 30, 1),
    ]);
    const rows = await candles(
      sql,
      'CANDLE',
      { from: new Date(minute), to: new Date(minute + 120_000) },
      60_000,
    );
    assert.deepEqual(
      rows.map((r) => ({ ...r })),
      [
        {
          ts: new Date(minute).toISOString(),
          open: 10,
          high: 15,
          low: 8,
          close: 9,
          updates: 10,
          bid: 11.9,
          ask: 14.5,
        },
        {
          ts: new Date(minute + 60_000).toISOString(),
          open: 20,
          high: 21,
          low: 19,
          close: 20.5,
          updates: 5,
          bid: null,
          ask: 20.6,
        },
      ],
    );
    // Buckets start on multiples of the interval from the epoch: 30s splits the first minute in two.
    const halves = await candles(
      sql,
      'CANDLE',
      { from: new Date(minute), to: new Date(minute + 60_000) },
      30_000,
    );
    assert.deepEqual(
      halves.map((r) => [r.ts, r.open, r.close, r.updates]),
      [
        [new Date(minute).toISOString(), 10, 12, 6],
        [new Date(minute + 30_000).toISOString(), 12, 9, 4],
      ],
    );
    // A symbol without rows: none.
    assert.deepEqual(await candles(sql, 'NOTHING', range, 60_000), []);
  });

  test('equity: the last sample of each bucket', async () => {
    const sample = (ms: number, balance: number, eq: number | null, pnl: number | null): HistoryRow => ({
      ts: new Date(ms),
      total_balance: balance,
      equity: eq,
      unrealized_pnl: pnl,
    });
    const hour = D + 6 * 3_600_000;
    await insert(sql, 'account', [
      sample(hour + 50_000, 1000, 1010, 10),
      sample(hour + 10_000, 999, 990, -9),
      sample(hour + 70_000, 1001, 1003, 2),
      // The last of the second minute has no equity: it is the last sample all the same.
      sample(hour + 110_000, 1002, null, null),
      sample(hour + 200_000, 1003, 1004, 1),
    ]);
    const rows = await equity(sql, { from: new Date(hour), to: new Date(hour + 180_000) }, 60_000);
    assert.deepEqual(
      rows.map((r) => ({ ...r })),
      [
        { ts: new Date(hour).toISOString(), total_balance: 1000, equity: 1010, unrealized_pnl: 10 },
        {
          ts: new Date(hour + 60_000).toISOString(),
          total_balance: 1002,
          equity: null,
          unrealized_pnl: null,
        },
      ],
    );
    const wide = await equity(sql, { from: new Date(hour), to: new Date(hour + 3_600_000) }, 3_600_000);
    assert.deepEqual(
      wide.map((r) => [r.ts, r.equity]),
      [[new Date(hour).toISOString(), 1004]],
    );
  });
});
