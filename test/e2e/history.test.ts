import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { DashboardClient, JsonObject } from '../../src/client.ts';
import { HISTORY_KINDS } from '../../src/history/rows.ts';
import type { Json } from '../../src/merge-patch.ts';
import type { Topic } from '../../src/topics.ts';
import { type Stack, startApp, startStack, stopStack, waitReady } from '../helpers/app.ts';
import { connectClient, viewWhere } from '../helpers/client.ts';
import { createTestDatabase, daySuffix, type TestDatabase } from '../helpers/postgres.ts';
import { authOn, signToken } from '../helpers/tokens.ts';

/**
 * History on PostgreSQL end to end (plugins/history.ts, routes/api/history.ts): what is published on Redis reaches
 * the tables through the hub's state, the routes read it back, retention drops old partitions, and an outage of
 * PostgreSQL never reaches the live path. Each suite has its own database (test/helpers/postgres.ts).
 */

const DAY_MS = 86_400_000;
/** Short intervals so rows reach the tables within a test. */
const FAST = { flush_interval: '100ms', account_interval: '200ms' };

/** Resolves after the next successful history write (the plugin's observer); rejects after `timeoutMs`. */
function nextFlush(app: FastifyInstance, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(`no successful history write within ${timeoutMs}ms: ${JSON.stringify(app.history.info)}`),
      );
    }, timeoutMs);
    const off = app.history.observe(() => {
      clearTimeout(timer);
      off();
      resolve();
    });
  });
}

/**
 * Reads `read` after each successful history write until it returns something other than undefined; fails with
 * `what` and the last value seen after `timeoutMs`.
 */
async function afterFlushes<T>(
  app: FastifyInstance,
  what: string,
  read: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 8000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`${what}: not reached in ${timeoutMs}ms`);
    await nextFlush(app, left).catch((error: Error) => {
      throw new Error(`${what}: ${error.message}`);
    });
  }
}

/** Resolves when the hub's state takes a write of `topic` matching `match` (register before publishing). */
function nextWrite(
  app: FastifyInstance,
  topic: Topic,
  match: (key: string, value: Json | undefined) => boolean = () => true,
  timeoutMs = 5000,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${topic} write within ${timeoutMs}ms`));
    }, timeoutMs);
    const off = app.state.observeWrites((written, key, value) => {
      if (written !== topic || !match(key, value)) return;
      clearTimeout(timer);
      off();
      resolve(Date.now());
    });
  });
}

/**
 * Reads `read` every 20 ms until it returns something other than undefined: for what no event announces (the
 * breaker's state inside the hub). Fails with `what` after `timeoutMs`.
 */
async function polled<T>(what: string, read: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs}ms`);
    await delay(20);
  }
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

async function get(url: string, token?: string): Promise<Reply> {
  const response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** The one error shape: exactly `{error, message}`. */
function assertError(reply: Reply, status: number, code: string, message?: RegExp): void {
  assert.equal(reply.status, status, JSON.stringify(reply.body));
  assert.deepEqual(Object.keys(reply.body).sort(), ['error', 'message'], JSON.stringify(reply.body));
  assert.equal(reply.body.error, code);
  if (message) assert.match(String(reply.body.message), message);
}

/** A metric's value in the Prometheus text of /metrics (`name{labels}` exactly as printed). */
async function metric(url: string, series: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

type Row = Record<string, unknown>;
const iso = (ms: number) => new Date(ms).toISOString();

describe('history recorded from the live path', () => {
  let db: TestDatabase;
  let stack: Stack;
  let url: string;
  let app: FastifyInstance;
  const trader = signToken({ userId: 'tina', role: 'trader' });
  const viewer = signToken({ userId: 'vera' });
  const publish = (channel: string, payload: unknown) =>
    stack.publisher.publish(channel, JSON.stringify(payload));
  const api = (path: string, token = trader) => get(`${url}/api/v1/history${path}`, token);

  before(async () => {
    db = await createTestDatabase();
    stack = await startStack({
      auth: authOn(),
      http: { rate_limit: { max: 100_000, window: '1m' } },
      history: { database_url: db.url, ...FAST, max_rows: 200 },
    });
    ({ url, app } = stack.running);
    // The first write migrates and makes today's partitions.
    await afterFlushes(app, 'history up', () => (app.history.info.status === 'up' ? true : undefined));
  });

  after(async () => {
    if (stack) await stopStack(stack);
    await db?.drop();
  });

  test('the first write applied the migration and made the day partitions', async () => {
    const applied = await db.sql`SELECT version, name FROM history_migrations`;
    assert.deepEqual([...applied], [{ version: 1, name: '0001_tables.sql' }]);
    const today = daySuffix(Date.now());
    const tomorrow = daySuffix(Date.now() + DAY_MS);
    for (const table of ['history_market_data', 'history_trades', 'history_order_events', 'history_alerts']) {
      assert.deepEqual(await db.partitions(table), [`${table}_p${today}`, `${table}_p${tomorrow}`]);
    }
  });

  test('one row per symbol and second from published market data; candles aggregate those rows', async () => {
    // Prices published over a little more than two seconds, paced by the hub's writes (every 100 ms), so the
    // hub receives them in at least three different seconds. Each is distinct, so each is a state write.
    const published: { price: number; bid: number; ask: number; at: number }[] = [];
    const started = Date.now();
    for (let i = 0; Date.now() - started < 2200; ) {
      for (let k = 0; k < 3; k++, i++) {
        const price = 100 + ((i * 37) % 23) + i / 1000;
        const bid = price - 0.5;
        const ask = price + 0.5;
        const seen = nextWrite(app, 'market_data', (key) => key === 'CNDL');
        await publish('market_data:CNDL', { last_price: price, bid_price: bid, ask_price: ask });
        published.push({ price, bid, ask, at: await seen });
      }
      await nextFlush(app);
    }
    const rows = await afterFlushes(app, 'every CNDL update in the 1 s rows', async () => {
      const found = await db.sql<Row[]>`
        SELECT ts, open, high, low, close, bid, ask, updates FROM history_market_data
        WHERE symbol = 'CNDL' ORDER BY ts`;
      const updates = found.reduce((sum, row) => sum + Number(row.updates), 0);
      return updates === published.length ? found : undefined;
    });
    assert.ok(rows.length >= 3, `published over >2 s, yet only ${rows.length} one-second rows`);
    // The rows cut the published sequence into consecutive runs, in order, one per second as the hub received it.
    let next = 0;
    for (const row of rows) {
      const ts = (row.ts as Date).getTime();
      assert.equal(ts % 1000, 0, `${iso(ts)} is a whole second`);
      const run = published.slice(next, next + Number(row.updates));
      next += run.length;
      const prices = run.map((p) => p.price);
      assert.equal(row.open, prices[0]);
      assert.equal(row.close, prices.at(-1));
      assert.equal(row.high, Math.max(...prices));
      assert.equal(row.low, Math.min(...prices));
      assert.equal(row.bid, run.at(-1)!.bid);
      assert.equal(row.ask, run.at(-1)!.ask);
      for (const p of run) {
        // Labelled by the second's start, the one the hub received the update in (its clock is ours: same process).
        assert.ok(p.at >= ts && p.at < ts + 1005, `update at ${iso(p.at)} in the row of ${iso(ts)}`);
      }
    }
    assert.equal(next, published.length);

    // 1 s candles are those rows; the range is [from, to).
    const first = (rows[0].ts as Date).getTime();
    const last = (rows.at(-1)!.ts as Date).getTime();
    const seconds = await api(`/candles?symbol=cndl&interval=1s&from=${first}&to=${iso(last + 1000)}`);
    assert.equal(seconds.status, 200, JSON.stringify(seconds.body));
    assert.equal(seconds.body.symbol, 'CNDL');
    assert.deepEqual(
      seconds.body.rows,
      rows.map((row) => ({ ...row, ts: (row.ts as Date).toISOString() })),
    );
    const withoutLast = await api(`/candles?symbol=CNDL&interval=1s&from=${first}&to=${last}`);
    assert.equal((withoutLast.body.rows as Row[]).length, rows.length - 1, 'to is exclusive');

    // 1 m candles (default range: the last 100 minutes), computed here from the same rows.
    const expected = new Map<number, Row>();
    for (const row of rows) {
      const minute = Math.floor((row.ts as Date).getTime() / 60_000) * 60_000;
      const candle = expected.get(minute);
      if (!candle) {
        expected.set(minute, { ...row, ts: iso(minute) });
        continue;
      }
      candle.high = Math.max(Number(candle.high), Number(row.high));
      candle.low = Math.min(Number(candle.low), Number(row.low));
      candle.close = row.close;
      candle.bid = row.bid;
      candle.ask = row.ask;
      candle.updates = Number(candle.updates) + Number(row.updates);
    }
    const minutes = await api('/candles?symbol=CNDL');
    assert.equal(minutes.status, 200, JSON.stringify(minutes.body));
    assert.equal(minutes.body.interval, '1m');
    assert.deepEqual(minutes.body.rows, [...expected.values()]);
    const candles = minutes.body.rows as Row[];
    assert.equal(candles[0].open, published[0].price);
    assert.equal(candles.at(-1)!.close, published.at(-1)!.price);
    assert.equal(Math.max(...candles.map((c) => Number(c.high))), Math.max(...published.map((p) => p.price)));
    assert.equal(
      candles.reduce((sum, c) => sum + Number(c.updates), 0),
      published.length,
    );
  });

  test('candles over rows at known times: first open, max high, min low, last close, buckets with data only', async () => {
    // Rows written here, at fixed seconds of today (its partition exists), for a symbol nothing publishes.
    const base = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    const second = (
      s: number,
      open: number,
      high: number,
      low: number,
      close: number,
      bid: number | null,
    ) => ({
      ts: new Date(base + s * 1000),
      symbol: 'FIXD',
      open,
      high,
      low,
      close,
      bid,
      ask: bid === null ? null : bid + 1,
      updates: 2,
    });
    const fixed = [
      second(0, 10, 12, 9, 11, 10.5),
      second(1, 11, 15, 11, 14, 13.5),
      second(59, 14, 14, 8, 9, null),
      second(120, 20, 21, 19, 20, 19.5),
      second(121, 20, 22, 18, 21, 20.5),
      second(300, 30, 30, 30, 30, 29.5),
    ];
    await db.sql`INSERT INTO history_market_data ${db.sql(fixed)}`;
    const range = `from=${base}&to=${base + 600_000}`;
    const minutes = await api(`/candles?symbol=FIXD&interval=1m&${range}`);
    assert.equal(minutes.status, 200, JSON.stringify(minutes.body));
    assert.deepEqual(minutes.body.rows, [
      // The last bid of minute 0 is the last non-null one.
      { ts: iso(base), open: 10, high: 15, low: 8, close: 9, bid: 13.5, ask: 14.5, updates: 6 },
      { ts: iso(base + 120_000), open: 20, high: 22, low: 18, close: 21, bid: 20.5, ask: 21.5, updates: 4 },
      { ts: iso(base + 300_000), open: 30, high: 30, low: 30, close: 30, bid: 29.5, ask: 30.5, updates: 2 },
    ]);
    const fives = await api(`/candles?symbol=FIXD&interval=5m&${range}`);
    assert.deepEqual(fives.body.rows, [
      { ts: iso(base), open: 10, high: 22, low: 8, close: 21, bid: 20.5, ask: 21.5, updates: 10 },
      { ts: iso(base + 300_000), open: 30, high: 30, low: 30, close: 30, bid: 29.5, ask: 30.5, updates: 2 },
    ]);
  });

  test('order events of a lifecycle, in order; re-stating the same order adds none', async () => {
    const t0 = Date.now() - 60_000;
    const order = {
      order_id: 'ord-1',
      symbol: 'ordx',
      side: 'BUY',
      type: 'LIMIT',
      price: 100,
      quantity: 1,
      created_at: iso(t0),
    };
    const lifecycle = [
      { state: 'NEW', filled_quantity: 0, updated_at: iso(t0) },
      { state: 'PARTIALLY_FILLED', filled_quantity: 0.4, average_price: 100, updated_at: iso(t0 + 1000) },
      { state: 'FILLED', filled_quantity: 1, average_price: 100, updated_at: iso(t0 + 2000) },
      // A poll re-stating the filled order later: no change of state or filled quantity, so no event.
      { state: 'FILLED', filled_quantity: 1, average_price: 100, updated_at: iso(t0 + 3000) },
    ];
    for (const change of lifecycle) {
      const written = nextWrite(app, 'orders', (key) => key === 'ord-1');
      await publish('orders:x', { ...order, ...change });
      await written;
    }
    // A later order on the same queue: once its event is in the table, anything queued before it is too.
    await publish('orders:x', { ...order, order_id: 'ord-mark', state: 'NEW', updated_at: iso(t0 + 4000) });
    await afterFlushes(app, 'the marker order event', async () => {
      const [row] = await db.sql`SELECT 1 FROM history_order_events WHERE order_id = 'ord-mark'`;
      return row;
    });
    const reply = await api('/orders?symbol=ORDX');
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    const events = (reply.body.rows as Row[]).filter((row) => row.order_id === 'ord-1');
    assert.deepEqual(
      events.map((e) => [e.ts, e.state, e.filled_quantity, e.symbol]),
      [
        [iso(t0), 'NEW', 0, 'ORDX'],
        [iso(t0 + 1000), 'PARTIALLY_FILLED', 0.4, 'ORDX'],
        [iso(t0 + 2000), 'FILLED', 1, 'ORDX'],
      ],
    );
    assert.equal(events[1].average_price, 100);
    assert.equal(events[0].side, 'BUY');
    assert.equal(reply.body.next_before, null);
    const filled = await api('/orders?state=filled');
    assert.deepEqual(
      (filled.body.rows as Row[]).map((e) => [e.order_id, e.state]),
      [['ord-1', 'FILLED']],
    );
  });

  test('events of one order at one time come back in lifecycle order, and a page boundary between them loses none', async () => {
    // No updated_at (or a poll's whole seconds): every event of the order has the same ts.
    const created = iso(Date.now() - 50_000);
    const order = { order_id: 'ord-tie', symbol: 'TIEX', side: 'SELL', quantity: 1, created_at: created };
    for (const [state, filled_quantity] of [
      ['NEW', 0],
      ['PARTIALLY_FILLED', 0.5],
      ['FILLED', 1],
    ] as const) {
      const written = nextWrite(
        app,
        'orders',
        (key, value) => key === 'ord-tie' && JSON.stringify(value).includes(state),
      );
      await publish('orders:x', { ...order, state, filled_quantity });
      await written;
    }
    await afterFlushes(app, 'the three ord-tie events', async () => {
      const [{ count }] =
        await db.sql`SELECT count(*)::int AS count FROM history_order_events WHERE order_id = 'ord-tie'`;
      return count === 3 ? true : undefined;
    });
    const lifecycle = ['NEW', 'PARTIALLY_FILLED', 'FILLED'];
    const all = await api('/orders?symbol=TIEX');
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.deepEqual(
      (all.body.rows as Row[]).map((row) => [row.ts, row.state]),
      lifecycle.map((state) => [created, state]),
    );
    const first = await api('/orders?symbol=TIEX&limit=2');
    assert.deepEqual(
      (first.body.rows as Row[]).map((row) => row.state),
      ['PARTIALLY_FILLED', 'FILLED'],
    );
    const second = await api(`/orders?symbol=TIEX&limit=2&before=${first.body.next_before}`);
    assert.deepEqual(
      (second.body.rows as Row[]).map((row) => row.state),
      ['NEW'],
    );
    assert.equal(second.body.next_before, null);
  });

  test('trades are recorded and paged newest page first, each page oldest first', async () => {
    const t0 = Date.now() - 100_000;
    for (let i = 0; i < 25; i++) {
      await publish('trades:TRDX', {
        trade_id: `t${String(i).padStart(2, '0')}`,
        price: 50 + i,
        quantity: '0.5',
        timestamp: t0 + i * 1000,
        is_buyer_maker: i % 2 === 0,
      });
    }
    await afterFlushes(app, '25 trades in the table', async () => {
      const [{ count }] =
        await db.sql`SELECT count(*)::int AS count FROM history_trades WHERE symbol = 'TRDX'`;
      return count === 25 ? true : undefined;
    });
    const ids = (rows: unknown) => (rows as Row[]).map((row) => row.trade_id);
    const range = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, k) => `t${String(from + k).padStart(2, '0')}`);

    const first = await api('/trades?symbol=trdx&limit=10');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(ids(first.body.rows), range(15, 25));
    assert.deepEqual((first.body.rows as Row[])[0], {
      ts: iso(t0 + 15_000),
      symbol: 'TRDX',
      trade_id: 't15',
      price: 65,
      quantity: 0.5,
      side: 'BUY',
    });
    assert.equal(typeof first.body.next_before, 'string');
    const second = await api(`/trades?symbol=TRDX&limit=10&before=${first.body.next_before}`);
    assert.deepEqual(ids(second.body.rows), range(5, 15));
    const third = await api(`/trades?symbol=TRDX&limit=10&before=${second.body.next_before}`);
    assert.deepEqual(ids(third.body.rows), range(0, 5));
    assert.equal(third.body.next_before, null);
    assert.equal((third.body.rows as Row[])[0].side, 'SELL', 'a buyer-maker trade is a sell');

    // The older service's form: the newest `limit` trades of the symbol.
    const legacy = await api('?type=trades&symbol=trdx&limit=5');
    assert.equal(legacy.status, 200, JSON.stringify(legacy.body));
    assert.equal(legacy.body.type, 'trades');
    assert.equal(legacy.body.symbol, 'TRDX');
    assert.deepEqual(ids(legacy.body.data), range(20, 25));
  });

  test('fills and alerts are recorded and returned', async () => {
    const t0 = Date.now() - 30_000;
    await publish('fills:x', {
      fill_id: 'f-1',
      order_id: 'ord-1',
      symbol: 'FILX',
      side: 'BUY',
      price: '100.5',
      quantity: 2,
      fee: 0.1,
      pnl: -1.5,
      timestamp: iso(t0),
    });
    // The account monitor's form: `id`, not `fill_id`.
    await publish('fills:x', {
      id: 77,
      symbol: 'FILX',
      side: 'SELL',
      price: 101,
      quantity: 1,
      timestamp: t0 + 1000,
    });
    const alert = { type: 'drawdown', message: 'Drawdown above 10%', value: 12, threshold: 10 };
    await publish('alerts:x', { ...alert, severity: 'critical', timestamp: iso(t0) });
    await publish('alerts:x', { ...alert, severity: 'warning', value: 8, timestamp: iso(t0 + 1000) });
    await afterFlushes(app, 'two fills and two alerts', async () => {
      const [{ fills, alerts }] = await db.sql`
        SELECT (SELECT count(*)::int FROM history_fills) AS fills, (SELECT count(*)::int FROM history_alerts) AS alerts`;
      return fills === 2 && alerts === 2 ? true : undefined;
    });
    const fills = await api('/fills?symbol=FILX');
    assert.equal(fills.status, 200, JSON.stringify(fills.body));
    assert.deepEqual(fills.body, {
      rows: [
        {
          ts: iso(t0),
          symbol: 'FILX',
          fill_id: 'f-1',
          order_id: 'ord-1',
          side: 'BUY',
          price: 100.5,
          quantity: 2,
          fee: 0.1,
          pnl: -1.5,
        },
        {
          ts: iso(t0 + 1000),
          symbol: 'FILX',
          fill_id: '77',
          order_id: null,
          side: 'SELL',
          price: 101,
          quantity: 1,
          fee: null,
          pnl: null,
        },
      ],
      next_before: null,
    });
    const critical = await api('/alerts?severity=CRITICAL');
    assert.equal(critical.status, 200, JSON.stringify(critical.body));
    const rows = critical.body.rows as Row[];
    assert.equal(rows.length, 1);
    assert.deepEqual(
      { ...rows[0], id: undefined },
      {
        ts: iso(t0),
        id: undefined,
        source: 'account_monitor',
        type: 'drawdown',
        severity: 'CRITICAL',
        symbol: null,
        message: 'Drawdown above 10%',
        value: 12,
        threshold: 10,
      },
    );
    const all = await api('/alerts');
    assert.deepEqual(
      (all.body.rows as Row[]).map((row) => row.severity),
      ['CRITICAL', 'WARNING'],
    );
  });

  test('the account is sampled into the equity curve', async () => {
    await publish('account:main', { total_balance: 1000, unrealized_pnl: 5 });
    await afterFlushes(app, 'an account sample', async () => {
      const [row] = await db.sql`SELECT 1 FROM history_account WHERE total_balance = 1000`;
      return row;
    });
    const reply = await api('/equity?interval=1s');
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.interval, '1s');
    const points = reply.body.rows as Row[];
    assert.ok(points.length >= 1);
    // No `equity` field in the account: balance plus unrealized PnL.
    assert.deepEqual(
      { ...points.at(-1), ts: undefined },
      { ts: undefined, total_balance: 1000, equity: 1005, unrealized_pnl: 5 },
    );
    assert.equal(new Date(String(points.at(-1)!.ts)).getTime() % 1000, 0, 'labelled by the bucket start');
  });

  test('limits and bad parameters are 400 invalid_request, naming what was wrong', async () => {
    const now = Date.now();
    assertError(
      await api('/trades?symbol=TRDX&limit=201'),
      400,
      'invalid_request',
      /history\.max_rows \(200\)/,
    );
    assertError(
      await api(`/trades?symbol=TRDX&from=${now - 40 * DAY_MS}&to=${now}`),
      400,
      'invalid_request',
      /31 days/,
    );
    assertError(await api('/fills?from=yesterday'), 400, 'invalid_request', /^from "yesterday"/);
    assertError(
      await api(`/trades?symbol=TRDX&from=${now}&to=${now - 1000}`),
      400,
      'invalid_request',
      /before/,
    );
    assertError(await api('/trades?symbol=TRDX&before=not-a-cursor'), 400, 'invalid_request', /before/);
    const forged = Buffer.from(JSON.stringify({ ts: 1 })).toString('base64url');
    assertError(await api(`/trades?symbol=TRDX&before=${forged}`), 400, 'invalid_request', /before/);
    assertError(
      await api(`/candles?symbol=CNDL&interval=1s&from=${now - 3_600_000}&to=${now}`),
      400,
      'invalid_request',
      /history\.max_buckets \(1500\)/,
    );
    assertError(await api('/candles?symbol=CNDL&interval=2d'), 400, 'invalid_request', /between 1s and 1d/);
    assertError(await api('/candles?symbol=CNDL&interval=5x'), 400, 'invalid_request');
    assertError(await api('/trades'), 400, 'invalid_request', /symbol/);
    // A misspelt parameter is refused, not ignored (Fastify's validator would drop it).
    assertError(
      await api('/trades?symbol=TRDX&symbl=X'),
      400,
      'invalid_request',
      /unknown query parameter "symbl"/,
    );
  });

  test('the topic permissions of /api/v1/state: a viewer reads candles and trades, not orders, fills, equity or alerts', async () => {
    const candles = await api('/candles?symbol=FIXD', viewer);
    assert.equal(candles.status, 200, JSON.stringify(candles.body));
    const trades = await api('/trades?symbol=TRDX', viewer);
    assert.equal(trades.status, 200);
    assert.equal((trades.body.rows as Row[]).length, 25);
    for (const path of ['/orders', '/fills', '/equity', '/alerts', '?type=orders', '?type=equity']) {
      const refused = await api(path, viewer);
      assertError(refused, 403, 'forbidden_topic', /role viewer/);
    }
    assertError(await get(`${url}/api/v1/history/trades?symbol=TRDX`), 401, 'missing_token');
  });

  test('/debug and the metrics count what was written', async () => {
    const debug = await get(`${url}/debug`);
    const history = debug.body.history as JsonObject;
    assert.equal(history.enabled, true);
    assert.equal(history.status, 'up');
    assert.equal(history.breaker, 'closed');
    const written = history.written as Record<string, number>;
    assert.equal(written.trades, 25);
    assert.equal(written.fills, 2);
    assert.equal(written.alerts, 2);
    assert.equal(written.orders, 7, 'three events of ord-1, the marker, three of ord-tie');
    assert.equal(history.errors, 0);
    assert.equal(await metric(url, 'dashboard_history_rows_written_total{kind="trades"}'), 25);
    assert.equal(await metric(url, 'dashboard_history_up'), 1);
    assert.equal(await metric(url, 'dashboard_history_dropped_total{kind="trades"}'), 0);
  });
});

describe('retention', () => {
  let db: TestDatabase;
  let stack: Stack;

  before(async () => {
    db = await createTestDatabase();
  });

  after(async () => {
    if (stack) await stopStack(stack);
    await db?.drop();
  });

  test('a restart drops the day partitions past history.retention and keeps the rest', async () => {
    stack = await startStack({ history: { database_url: db.url, ...FAST } });
    const first = stack.running.app;
    await afterFlushes(first, 'history up', () => (first.history.info.status === 'up' ? true : undefined));
    // Days the hub did not make: one 40 days ago (past 30 days) with a trade in it, one 29 days ago.
    const now = Date.now();
    const old = Math.floor((now - 40 * DAY_MS) / DAY_MS) * DAY_MS;
    const recent = Math.floor((now - 29 * DAY_MS) / DAY_MS) * DAY_MS;
    for (const day of [old, recent]) {
      await db.sql.unsafe(
        `CREATE TABLE history_trades_p${daySuffix(day)} PARTITION OF history_trades FOR VALUES FROM ('${iso(day)}') TO ('${iso(day + DAY_MS)}')`,
      );
    }
    await db.sql`INSERT INTO history_trades (ts, symbol, trade_id, price, quantity) VALUES (${new Date(old + 1000)}, 'OLDX', 'old-1', 1, 1)`;
    assert.ok((await db.partitions('history_trades')).includes(`history_trades_p${daySuffix(old)}`));

    await stack.running.close();
    stack.running = await startApp(stack.redis.url, {
      history: { database_url: db.url, ...FAST, retention: '30d' },
    });
    const { app } = stack.running;
    await waitReady(app);
    await afterFlushes(app, 'history up again', () => (app.history.info.status === 'up' ? true : undefined));
    const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    assert.deepEqual(await db.partitions('history_trades'), [
      `history_trades_p${daySuffix(recent)}`,
      `history_trades_p${daySuffix(today)}`,
      `history_trades_p${daySuffix(today + DAY_MS)}`,
    ]);
    const [{ count }] = await db.sql`SELECT count(*)::int AS count FROM history_trades WHERE symbol = 'OLDX'`;
    assert.equal(count, 0);
    // Migrations are applied once, whatever the restarts.
    assert.equal((await db.sql`SELECT version FROM history_migrations`).length, 1);

    // A row already past the retention when it arrives, or more than a day ahead (a partition per day a publisher
    // names would otherwise be made), is counted as dropped, never written; a row of now is written.
    const future = now + 10 * DAY_MS;
    for (const [id, timestamp] of [
      ['old-2', now - 40 * DAY_MS],
      ['future-1', future],
      ['now-1', now],
    ] as const) {
      await stack.publisher.publish(
        'trades:OLDX',
        JSON.stringify({ trade_id: id, price: 1, quantity: 1, timestamp }),
      );
    }
    await afterFlushes(app, 'the trade of now written', () =>
      app.history.info.written.trades === 1 ? true : undefined,
    );
    assert.equal(app.history.info.dropped.trades, 2);
    const partitions = await db.partitions('history_trades');
    assert.ok(!partitions.includes(`history_trades_p${daySuffix(old)}`), partitions.join());
    assert.ok(!partitions.includes(`history_trades_p${daySuffix(future)}`), partitions.join());
    const ids = await db.sql`SELECT trade_id FROM history_trades WHERE symbol = 'OLDX'`;
    assert.deepEqual([...ids], [{ trade_id: 'now-1' }]);
  });
});

describe('PostgreSQL unavailable while clients stream', () => {
  let db: TestDatabase;
  let stack: Stack;
  let client: DashboardClient;

  before(async () => {
    db = await createTestDatabase();
    stack = await startStack({
      broadcast: { tui_interval: '20ms' },
      history: {
        database_url: db.url,
        ...FAST,
        queue_max_rows: 100,
        // Opens at the first failed write: at the default 50 %, the empty writes that succeeded since the start
        // count in the rolling window and would keep it closed until as many writes had failed.
        breaker: { reset_timeout: '500ms', volume_threshold: 1, error_threshold_percentage: 1 },
      },
    });
    client = await connectClient(stack.running.url, { type: 'tui' });
    await client.subscribe(['market_data', 'system']);
  });

  after(async () => {
    client?.close();
    if (stack) await stopStack(stack);
    await db?.drop();
  });

  const historyStatus = (data: JsonObject) =>
    ((data.system as JsonObject | undefined)?.history as JsonObject | undefined)?.status;

  test('the live path goes on, rows queue (the oldest dropped past the bound), and the queue is written after', async () => {
    const { app, url } = stack.running;
    const publish = (channel: string, payload: unknown) =>
      stack.publisher.publish(channel, JSON.stringify(payload));
    await viewWhere(client, (data) => historyStatus(data) === 'up');

    // The outage: the hub's connections cut, new ones refused.
    await db.allowConnections(false);
    assert.ok((await db.terminateConnections()) > 0, 'the hub held connections to terminate');
    const t0 = Date.now() - 200_000;
    const trade = (i: number) => ({
      trade_id: `t${String(i).padStart(3, '0')}`,
      price: 10 + i,
      quantity: 1,
      timestamp: t0 + i * 1000,
    });
    // A row to write: the next write fails.
    await publish('trades:OUTX', trade(1));
    await viewWhere(client, (data) => historyStatus(data) === 'down');

    // 150 trades while down: the queue keeps the newest 100.
    const last = nextWrite(app, 'trades', (_key, value) => JSON.stringify(value).includes('"t150"'));
    for (let i = 2; i <= 150; i++) await publish('trades:OUTX', trade(i));
    await last;
    // Fan-out is unaffected: each market data update reaches the client while PostgreSQL is down.
    const prices = [201.5, 202.25, 199.75, 203, 200.5];
    for (const price of prices) {
      await publish('market_data:OUTG', { last_price: price });
      await viewWhere(
        client,
        (data) =>
          (data.market_data as JsonObject).OUTG !== undefined &&
          ((data.market_data as JsonObject).OUTG as JsonObject).last_price === price,
      );
    }

    // A probe of the half-open breaker holds the queued rows while it tries: read /debug while the breaker is
    // open (one snapshot: it is built in one tick), when nothing is in flight.
    const debug = await polled('the breaker open', async () => {
      const history = (await get(`${url}/debug`)).body.history as JsonObject;
      return history.breaker === 'open' ? history : undefined;
    });
    assert.equal(debug.status, 'down');
    assert.ok(Number(debug.errors) >= 1);
    assert.match(String(debug.lastError), /not currently accepting connections|terminat/);
    assert.equal((debug.queued as Record<string, number>).trades, 100);
    assert.equal((debug.dropped as Record<string, number>).trades, 50);
    assert.equal((debug.written as Record<string, number>).trades, 0);
    assert.equal(await metric(url, 'dashboard_history_dropped_total{kind="trades"}'), 50);
    await polled('dashboard_history_queue_rows 100', async () =>
      (await metric(url, 'dashboard_history_queue_rows{kind="trades"}')) === 100 ? true : undefined,
    );
    assert.equal(await metric(url, 'dashboard_history_up'), 0);
    assert.ok(
      Number(await metric(url, 'dashboard_history_errors_total')) >= 1,
      'the failed writes are counted',
    );
    // Readiness is not history's: the hub serves the live path.
    const ready = await fetch(`${url}/ready`);
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    // A history query meanwhile: 503, never the driver's message.
    assertError(
      await get(`${url}/api/v1/history/trades?symbol=OUTX`),
      503,
      'history_unavailable',
      /^history is unavailable/,
    );

    // PostgreSQL back: the breaker's probe succeeds and everything queued is written.
    await db.allowConnections(true);
    await viewWhere(client, (data) => historyStatus(data) === 'up', 8000);
    const written = await db.sql<{ trade_id: string }[]>`
      SELECT trade_id FROM history_trades WHERE symbol = 'OUTX' ORDER BY ts`;
    assert.deepEqual(
      written.map((row) => row.trade_id),
      Array.from({ length: 100 }, (_, k) => trade(51 + k).trade_id),
    );
    assert.equal(app.history.info.written.trades, 100);
    assert.equal(app.history.queued().trades, 0);
    // The market data of the outage is written too (its last second closes at a later write).
    const closes = await afterFlushes(app, 'the OUTG seconds', async () => {
      const rows = await db.sql<
        Row[]
      >`SELECT close, updates FROM history_market_data WHERE symbol = 'OUTG' ORDER BY ts`;
      return rows.reduce((sum, row) => sum + Number(row.updates), 0) === prices.length ? rows : undefined;
    });
    assert.equal(closes.at(-1)!.close, prices.at(-1));
    const replay = await get(`${url}/api/v1/history/trades?symbol=OUTX&limit=1`);
    assert.equal(replay.status, 200);
    assert.equal((replay.body.rows as Row[])[0].trade_id, 't150');
    assert.equal(await metric(url, 'dashboard_history_up'), 1);
    assert.equal(app.history.info.breaker, 'closed');
  });
});

describe('history off', () => {
  let stack: Stack;

  before(async () => {
    stack = await startStack({});
  });

  after(async () => {
    if (stack) await stopStack(stack);
  });

  test('the routes answer 503 history_unavailable; the history metrics read 0', async () => {
    const { url, app } = stack.running;
    for (const path of [
      '/candles?symbol=BTCUSDT',
      '/trades?symbol=BTCUSDT',
      '/orders',
      '?type=trades&symbol=BTCUSDT',
    ]) {
      assertError(
        await get(`${url}/api/v1/history${path}`),
        503,
        'history_unavailable',
        /history\.database_url/,
      );
    }
    const debug = (await get(`${url}/debug`)).body.history as JsonObject;
    assert.equal(debug.enabled, false);
    assert.equal(debug.status, 'off');
    assert.equal((app.state.get('system') as JsonObject).history, undefined);
    // Exported at 0 rather than not at all: a dashboard or an alert rule naming them works against every hub.
    assert.equal(await metric(url, 'dashboard_history_enabled'), 0);
    assert.equal(await metric(url, 'dashboard_history_up'), 0);
    assert.equal(await metric(url, 'dashboard_history_errors_total'), 0);
    assert.equal(await metric(url, 'dashboard_history_flush_duration_seconds_count'), 0);
    for (const kind of HISTORY_KINDS) {
      assert.equal(await metric(url, `dashboard_history_rows_written_total{kind="${kind}"}`), 0);
      assert.equal(await metric(url, `dashboard_history_dropped_total{kind="${kind}"}`), 0);
      assert.equal(await metric(url, `dashboard_history_queue_rows{kind="${kind}"}`), 0);
    }
  });
});
