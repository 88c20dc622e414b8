/**
 * Reading history: candles from the one-second rows (`date_bin`), the equity curve, and pages of trades, fills,
 * order events and alerts (keyset pagination on `ts` and each kind's keys, newest page first, rows oldest first). Limits are
 * checked by the route (routes/api/history.ts) before a query is built.
 */
import type { Sql } from 'postgres';
import type { HistoryKind } from './rows.ts';
import { TABLES } from './rows.ts';

export interface Range {
  from: Date;
  to: Date;
}

/** Where a page ends: the `ts` and the keys (rows.ts `keys`) of its oldest row; the next page holds the rows before. */
export interface Cursor {
  ts: Date;
  keys: (string | number)[];
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.ts.toISOString(), ...cursor.keys])).toString('base64url');
}

/** The cursor of a `before=` parameter for `kind`, or undefined when it is none this service made for it. */
export function decodeCursor(text: string, kind: HistoryKind): Cursor | undefined {
  try {
    const value = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown;
    if (!Array.isArray(value) || value.length !== TABLES[kind].keys.length + 1) return undefined;
    const [ts, ...keys] = value as unknown[];
    if (typeof ts !== 'string') return undefined;
    if (!keys.every((key) => typeof key === 'string' || (typeof key === 'number' && Number.isFinite(key))))
      return undefined;
    const date = new Date(ts);
    return Number.isNaN(date.getTime()) ? undefined : { ts: date, keys: keys as (string | number)[] };
  } catch {
    return undefined;
  }
}

export interface Page {
  rows: Record<string, unknown>[];
  /** The cursor of the next (older) page, or null when this page is the last. */
  next_before: string | null;
}

export interface PageQuery extends Range {
  limit: number;
  before?: Cursor;
  /** Column filters, all equal: `symbol`, `state`, `severity`. */
  where: Record<string, string>;
}

/** A page of `kind`'s rows in the range, newest page first, its rows oldest first. */
export async function page(sql: Sql, kind: HistoryKind, query: PageQuery): Promise<Page> {
  const { table, columns, keys } = TABLES[kind];
  const order = ['ts', ...keys];
  // One fragment each: an empty array would be sent as a parameter.
  const filters = Object.entries(query.where).reduce(
    (fragment, [column, value]) => sql`${fragment} AND ${sql(column)} = ${value}`,
    sql``,
  );
  const before = query.before
    ? sql`AND (${sql(order)}) < (${[query.before.ts, ...query.before.keys].reduce<ReturnType<typeof sql>>(
        (fragment, value, index) => (index === 0 ? sql`${value}` : sql`${fragment}, ${value}`),
        sql``,
      )})`
    : sql``;
  const descending = order.reduce<ReturnType<typeof sql>>(
    (fragment, column, index) =>
      index === 0 ? sql`${sql(column)} DESC` : sql`${fragment}, ${sql(column)} DESC`,
    sql``,
  );
  const selected = [...new Set([...columns, ...keys])];
  const rows = await sql<Record<string, unknown>[]>`
    SELECT ${sql(selected)} FROM ${sql(table)}
    WHERE ts >= ${query.from} AND ts < ${query.to} ${filters} ${before}
    ORDER BY ${descending}
    LIMIT ${query.limit}`;
  rows.reverse();
  const oldest = rows[0];
  const next =
    rows.length === query.limit && oldest
      ? encodeCursor({ ts: oldest.ts as Date, keys: keys.map((key) => oldest[key] as string | number) })
      : null;
  return { rows: rows.map((row) => sent(row, columns)), next_before: next };
}

/** Candles of `symbol` in the range, one per `intervalMs` bucket that has data, labelled by the bucket's start. */
export async function candles(
  sql: Sql,
  symbol: string,
  range: Range,
  intervalMs: number,
): Promise<Record<string, unknown>[]> {
  const interval = `${intervalMs} milliseconds`;
  const rows = await sql<Record<string, unknown>[]>`
    SELECT date_bin(${interval}::interval, ts, TIMESTAMPTZ 'epoch') AS ts,
      (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low,
      (array_agg(close ORDER BY ts DESC))[1] AS close, sum(updates)::integer AS updates,
      (array_agg(bid ORDER BY ts DESC) FILTER (WHERE bid IS NOT NULL))[1] AS bid,
      (array_agg(ask ORDER BY ts DESC) FILTER (WHERE ask IS NOT NULL))[1] AS ask
    FROM history_market_data
    WHERE symbol = ${symbol} AND ts >= ${range.from} AND ts < ${range.to}
    GROUP BY 1 ORDER BY 1`;
  return rows.map(withIsoTimes);
}

/** The account's last sample in each `intervalMs` bucket of the range. */
export async function equity(sql: Sql, range: Range, intervalMs: number): Promise<Record<string, unknown>[]> {
  const interval = `${intervalMs} milliseconds`;
  const rows = await sql<Record<string, unknown>[]>`
    SELECT date_bin(${interval}::interval, ts, TIMESTAMPTZ 'epoch') AS ts,
      (array_agg(total_balance ORDER BY ts DESC))[1] AS total_balance,
      (array_agg(equity ORDER BY ts DESC))[1] AS equity,
      (array_agg(unrealized_pnl ORDER BY ts DESC))[1] AS unrealized_pnl
    FROM history_account
    WHERE ts >= ${range.from} AND ts < ${range.to}
    GROUP BY 1 ORDER BY 1`;
  return rows.map(withIsoTimes);
}

/** `ts` as ISO 8601 text. */
function withIsoTimes(row: Record<string, unknown>): Record<string, unknown> {
  return { ...row, ts: row.ts instanceof Date ? row.ts.toISOString() : row.ts };
}

/** A row as sent: its columns only (not the keys read for paging), `ts` as ISO 8601 text. */
function sent(row: Record<string, unknown>, columns: readonly string[]): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const column of columns) result[column] = row[column];
  return withIsoTimes(result);
}
