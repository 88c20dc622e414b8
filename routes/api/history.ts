import { type Static, type TSchema, Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type {
  FastifyPluginAsync,
  FastifyRequest,
  preValidationAsyncHookHandler,
  RouteShorthandOptions,
} from 'fastify';
import type { Sql } from 'postgres';
import { ACCESS_DOCS } from '../../plugins/access.ts';
import { errorResponses, HttpError } from '../../src/errors.ts';
import {
  type Cursor,
  candles,
  decodeCursor,
  equity,
  type Page,
  page,
  type Range,
} from '../../src/history/queries.ts';
import type { HistoryKind } from '../../src/history/rows.ts';
import { SYMBOL_PATTERN, type Topic } from '../../src/topics.ts';

/** A time as ISO 8601 or epoch milliseconds. */
const Time = Type.String({ minLength: 1, maxLength: 40, description: 'ISO 8601, or epoch milliseconds' });
/** 1s to 1d: a number and one of s, m, h, d. */
const Interval = Type.String({ pattern: '^[0-9]{1,5}(s|m|h|d)$', description: 'a bucket width, 1s to 1d' });
const SymbolName = Type.String({ pattern: SYMBOL_PATTERN.source });
const Limit = Type.Integer({
  minimum: 1,
  description: 'rows per page (100 by default, at most history.max_rows)',
});
const Before = Type.String({
  minLength: 1,
  maxLength: 512,
  description: 'the next_before of the previous page',
});
const Opt = Type.Optional;

const RangeQuery = { from: Opt(Time), to: Opt(Time) };
const PageQuery = { ...RangeQuery, limit: Opt(Limit), before: Opt(Before) };
const CandlesQuery = Type.Object(
  { symbol: SymbolName, interval: Opt(Interval), ...RangeQuery },
  { additionalProperties: false },
);
const TradesQuery = Type.Object({ symbol: SymbolName, ...PageQuery }, { additionalProperties: false });
const OrdersQuery = Type.Object(
  { symbol: Opt(SymbolName), state: Opt(Type.String({ pattern: '^[A-Za-z_]{1,32}$' })), ...PageQuery },
  { additionalProperties: false },
);
const FillsQuery = Type.Object({ symbol: Opt(SymbolName), ...PageQuery }, { additionalProperties: false });
const EquityQuery = Type.Object({ interval: Opt(Interval), ...RangeQuery }, { additionalProperties: false });
const AlertsQuery = Type.Object(
  {
    severity: Opt(Type.String({ pattern: '^(INFO|WARNING|CRITICAL)$' })),
    ...PageQuery,
  },
  { additionalProperties: false },
);
/** The older service's form, mapped onto the routes above. */
const LegacyQuery = Type.Object(
  {
    type: Type.Union(
      ['market_data', 'candles', 'trades', 'orders', 'fills', 'equity', 'account', 'alerts'].map((t) =>
        Type.Literal(t),
      ),
    ),
    symbol: Opt(SymbolName),
    limit: Opt(Limit),
  },
  { additionalProperties: false },
);

/** What the routes answer: rows as src/history/queries.ts returns them (columns of src/history/rows.ts TABLES). */
const Ts = Type.String({ format: 'date-time' });
const Num = Type.Number();
const Str = Type.String();
/** A column that may be NULL (src/history/migrations). */
const OrNull = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
/** A row's exact columns; typed loosely for the handlers, which return the driver's rows. */
const Row = (description: string, properties: Record<string, TSchema>) =>
  Type.Unsafe<Record<string, unknown>>(Type.Object(properties, { description }));
export const HISTORY_ROWS = {
  candles: Row('a candle: the bucket starting at `ts`; bid and ask the last seen in it', {
    ts: Ts,
    open: Num,
    high: Num,
    low: Num,
    close: Num,
    updates: Type.Integer({ description: 'market data updates in the bucket' }),
    bid: OrNull(Num),
    ask: OrNull(Num),
  }),
  equity: Row("the account's last sample in the bucket starting at `ts`", {
    ts: Ts,
    total_balance: OrNull(Num),
    equity: OrNull(Num),
    unrealized_pnl: OrNull(Num),
  }),
  trades: Row('a public trade', {
    ts: Ts,
    symbol: Str,
    trade_id: Str,
    price: Num,
    quantity: Num,
    side: OrNull(Str),
  }),
  fills: Row('a fill of one of our orders', {
    ts: Ts,
    symbol: Str,
    fill_id: Str,
    order_id: OrNull(Str),
    side: OrNull(Str),
    price: Num,
    quantity: Num,
    fee: OrNull(Num),
    pnl: OrNull(Num),
  }),
  orders: Row('an order event: a change of state or filled quantity', {
    ts: Ts,
    order_id: Str,
    symbol: Str,
    state: Str,
    side: OrNull(Str),
    type: OrNull(Str),
    price: OrNull(Num),
    quantity: OrNull(Num),
    filled_quantity: Num,
    average_price: OrNull(Num),
  }),
  alerts: Row('an alert', {
    ts: Ts,
    id: Str,
    source: Str,
    type: Str,
    severity: Str,
    symbol: OrNull(Str),
    message: Str,
    value: OrNull(Num),
    threshold: OrNull(Num),
  }),
};
const Buckets = (row: TSchema, extra: Record<string, TSchema>) =>
  Type.Object(
    { ...extra, interval: Type.String(), rows: Type.Array(row, { description: 'oldest first' }) },
    { description: 'one row per bucket of `interval` that has data' },
  );
const PageOf = (row: TSchema) =>
  Type.Object(
    {
      rows: Type.Array(row, { description: 'oldest first; the newest page comes first' }),
      next_before: OrNull(
        Type.String({ description: 'pass as `before` for the next (older) page; null on the last page' }),
      ),
    },
    { description: 'a page of rows' },
  );
const LegacyReply = Type.Object(
  {
    type: Type.String({ description: 'as asked' }),
    symbol: Opt(OrNull(Type.String())),
    data: Type.Array(
      Type.Object(
        {},
        {
          additionalProperties: true,
          description:
            'rows of the matching route: candles (market_data) of 1m, equity (account) of 1m, or the newest trades, orders, fills or alerts',
        },
      ),
    ),
  },
  { description: "the rows of `type`, in the older service's shape" },
);

const DAY_MS = 86_400_000;
/** No query scans more than this: a month of one-second rows is 2.6 million per symbol. */
const MAX_RANGE_MS = 31 * DAY_MS;
const DEFAULT_LIMIT = 100;
/** Candles and equity points when `from` is not given. */
const DEFAULT_BUCKETS = 100;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS };

function intervalMs(text: string | undefined, fallback: string): number {
  const value = text ?? fallback;
  const ms = Number(value.slice(0, -1)) * UNIT_MS[value.slice(-1)];
  if (ms < 1000 || ms > DAY_MS)
    throw new HttpError('invalid_request', `interval ${value} is not between 1s and 1d`);
  return ms;
}

function parseTime(name: string, text: string | undefined, fallback: number): Date {
  if (text === undefined) return new Date(fallback);
  // A date and time without an offset is UTC (JavaScript would read it in the server's time zone).
  const iso = /T[^Zz+-]*$/.test(text) ? `${text}Z` : text;
  const ms = /^[0-9]{1,16}$/.test(text) ? Number(text) : Date.parse(iso);
  if (!Number.isFinite(ms)) {
    throw new HttpError(
      'invalid_request',
      `${name} ${JSON.stringify(text)} is neither ISO 8601 nor epoch milliseconds`,
    );
  }
  return new Date(ms);
}

/** `from`/`to` with their defaults, checked: `from` before `to`, at most MAX_RANGE_MS apart. */
function rangeOf(query: { from?: string; to?: string }, defaultSpan: number): Range {
  const to = parseTime('to', query.to, Date.now());
  const from = parseTime('from', query.from, to.getTime() - defaultSpan);
  if (from.getTime() >= to.getTime()) throw new HttpError('invalid_request', 'from must be before to');
  if (to.getTime() - from.getTime() > MAX_RANGE_MS) {
    throw new HttpError(
      'invalid_request',
      'the range from..to is longer than 31 days, the longest a query may scan',
    );
  }
  return { from, to };
}

/** The buckets a range holds at `interval`, refused past history.max_buckets. */
function checkBuckets(range: Range, interval: number, max: number): void {
  const buckets = Math.ceil((range.to.getTime() - range.from.getTime()) / interval);
  if (buckets > max) {
    throw new HttpError(
      'invalid_request',
      `the range holds ${buckets} buckets of ${interval / 1000}s: at most history.max_buckets (${max}); use a longer interval or a shorter range`,
    );
  }
}

/**
 * GET /api/v1/history/{candles,trades,orders,fills,equity,alerts}: what history recorded (plugins/history.ts), with
 * the token and topic permissions of /api/v1/state (history of `orders` needs a role that may read `orders`), and
 * the older service's GET /api/v1/history?type=&symbol=&limit=.
 */
const historyRoutes: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { max_rows: maxRows, max_buckets: maxBuckets } = fastify.config.history;

  /** The client of a request allowed to read `topic`'s history; throws the refusal otherwise. */
  function allowed(request: FastifyRequest, topic: Topic): Sql {
    const principal = request.principal!;
    if (!fastify.auth.mayRead(principal, topic)) {
      throw new HttpError('forbidden_topic', `role ${principal.role} may not read ${topic}`);
    }
    const { sql } = fastify.history;
    if (!sql) throw new HttpError('history_unavailable', 'history is off: history.database_url is not set');
    return sql;
  }

  function pageOptions(
    kind: HistoryKind,
    query: { limit?: number; before?: string },
  ): { limit: number; before?: Cursor } {
    const limit = query.limit ?? Math.min(DEFAULT_LIMIT, maxRows);
    if (limit > maxRows)
      throw new HttpError('invalid_request', `limit ${limit} is above history.max_rows (${maxRows})`);
    if (query.before === undefined) return { limit };
    const before = decodeCursor(query.before, kind);
    if (!before) throw new HttpError('invalid_request', 'before is not a cursor this service returned');
    return { limit, before };
  }

  /** The bucket width (1m by default) and the range (the last 100 buckets by default), within history.max_buckets. */
  function bucketed(query: { interval?: string; from?: string; to?: string }): {
    interval: number;
    range: Range;
  } {
    const interval = intervalMs(query.interval, '1m');
    const range = rangeOf(query, interval * DEFAULT_BUCKETS);
    checkBuckets(range, interval, maxBuckets);
    return { interval, range };
  }

  /** Runs a query; PostgreSQL unreachable or failing is a 503, never the driver's message. */
  async function run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof HttpError) throw error;
      fastify.log.warn({ err: (error as Error).message }, 'history: query failed');
      throw new HttpError('history_unavailable', 'history is unavailable: PostgreSQL did not answer');
    }
  }

  const where = (fields: Record<string, string | undefined>) =>
    Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Record<
      string,
      string
    >;

  async function listPage(
    request: FastifyRequest,
    kind: HistoryKind,
    topic: Topic,
    query: { from?: string; to?: string; limit?: number; before?: string },
    filters: Record<string, string | undefined>,
  ): Promise<Page> {
    const sql = allowed(request, topic);
    const range = rangeOf(query, DAY_MS);
    const options = pageOptions(kind, query);
    return run(() => page(sql, kind, { ...range, ...options, where: where(filters) }));
  }

  // Fastify's validator drops parameters a schema does not name; a misspelt one (`symbl=`) must not be ignored.
  const options = <S extends TSchema, R extends TSchema>(
    querystring: S,
    reply: R,
    doc: { summary: string; description: string; topic?: string },
  ) => {
    // `token` is the token lookup's (`?token=`, as on /api/v1/state), not a parameter of the query.
    const known = new Set([
      'token',
      ...Object.keys((querystring as { properties?: object }).properties ?? {}),
    ]);
    const { onRequest, preValidation } = fastify.access.withToken as Required<
      Pick<RouteShorthandOptions, 'onRequest' | 'preValidation'>
    >;
    return {
      onRequest,
      preValidation: [
        preValidation as preValidationAsyncHookHandler,
        async (request: FastifyRequest) => {
          const unknown = Object.keys(request.query as object).filter((name) => !known.has(name));
          if (unknown.length > 0) {
            throw new HttpError(
              'invalid_request',
              `unknown query parameter ${unknown.map((name) => JSON.stringify(name.slice(0, 64))).join(', ')}`,
            );
          }
        },
      ],
      schema: {
        summary: doc.summary,
        description: [
          doc.description,
          doc.topic && `Needs a role that reads \`${doc.topic}\`.`,
          'With a token, or none from an address of auth.anonymous.',
        ]
          .filter(Boolean)
          .join(' '),
        tags: ['history'],
        security: ACCESS_DOCS.withToken.security,
        querystring,
        response: {
          200: reply,
          ...errorResponses({
            400: 'invalid_request: a parameter unknown, malformed or out of its bounds (range, buckets, limit, cursor)',
            403: "forbidden_topic: the token's role may not read the topic",
            503: 'history_unavailable: history is off (no history.database_url) or PostgreSQL did not answer',
          }),
          ...ACCESS_DOCS.withToken.response,
        },
      },
    };
  };

  app.get(
    '/api/v1/history/candles',
    options(CandlesQuery, Buckets(HISTORY_ROWS.candles, { symbol: Type.String() }), {
      summary: 'Candles of a symbol',
      description:
        'OHLC candles of `interval` (1m by default) from the one-second rows, one per bucket that has data; the last 100 buckets when `from` is absent, at most history.max_buckets.',
      topic: 'market_data',
    }),
    async (request) => {
      const { query } = request;
      const sql = allowed(request, 'market_data');
      const { interval, range } = bucketed(query);
      const symbol = query.symbol.toUpperCase();
      return {
        symbol,
        interval: query.interval ?? '1m',
        rows: await run(() => candles(sql, symbol, range, interval)),
      };
    },
  );

  app.get(
    '/api/v1/history/equity',
    options(EquityQuery, Buckets(HISTORY_ROWS.equity, {}), {
      summary: 'The equity curve',
      description:
        "The account's last sample in each bucket of `interval` (1m by default); the last 100 buckets when `from` is absent, at most history.max_buckets.",
      topic: 'account',
    }),
    async (request) => {
      const { query } = request;
      const sql = allowed(request, 'account');
      const { interval, range } = bucketed(query);
      return { interval: query.interval ?? '1m', rows: await run(() => equity(sql, range, interval)) };
    },
  );

  app.get(
    '/api/v1/history/trades',
    options(TradesQuery, PageOf(HISTORY_ROWS.trades), {
      summary: 'Trades of a symbol',
      description: 'A page of public trades (the last day when `from` is absent), newest page first.',
      topic: 'trades',
    }),
    async (request) =>
      listPage(request, 'trades', 'trades', request.query, { symbol: request.query.symbol.toUpperCase() }),
  );
  app.get(
    '/api/v1/history/orders',
    options(OrdersQuery, PageOf(HISTORY_ROWS.orders), {
      summary: 'Order events',
      description:
        'A page of order events (the last day when `from` is absent), newest page first; by symbol and state when given.',
      topic: 'orders',
    }),
    async (request) =>
      listPage(request, 'orders', 'orders', request.query, {
        symbol: request.query.symbol?.toUpperCase(),
        state: request.query.state?.toUpperCase(),
      }),
  );
  app.get(
    '/api/v1/history/fills',
    options(FillsQuery, PageOf(HISTORY_ROWS.fills), {
      summary: 'Fills',
      description:
        'A page of fills (the last day when `from` is absent), newest page first; by symbol when given.',
      topic: 'fills',
    }),
    async (request) =>
      listPage(request, 'fills', 'fills', request.query, { symbol: request.query.symbol?.toUpperCase() }),
  );
  app.get(
    '/api/v1/history/alerts',
    options(AlertsQuery, PageOf(HISTORY_ROWS.alerts), {
      summary: 'Alerts',
      description:
        'A page of alerts (the last day when `from` is absent), newest page first; by severity when given.',
      topic: 'alerts',
    }),
    async (request) =>
      listPage(request, 'alerts', 'alerts', request.query, { severity: request.query.severity }),
  );

  app.get(
    '/api/v1/history',
    options(LegacyQuery, LegacyReply, {
      summary: "The older service's history route",
      description:
        '`type` market_data or candles (needs `symbol`): 1m candles of the last `limit` minutes (100 by default); equity or account: the 1m equity curve likewise; trades (needs `symbol`), orders, fills, alerts: the newest `limit` rows. Each reads the topic of its type (market_data, account, trades, orders, fills, alerts).',
    }),
    async (request) => {
      const { type, symbol, limit } = request.query as Static<typeof LegacyQuery>;
      const upper = symbol?.toUpperCase();
      switch (type) {
        case 'market_data':
        case 'candles': {
          if (!upper) throw new HttpError('invalid_request', `type ${type} needs a symbol`);
          const sql = allowed(request, 'market_data');
          const buckets = Math.min(limit ?? DEFAULT_BUCKETS, maxBuckets);
          const range = rangeOf({}, buckets * 60_000);
          return { type, symbol: upper, data: await run(() => candles(sql, upper, range, 60_000)) };
        }
        case 'equity':
        case 'account': {
          const sql = allowed(request, 'account');
          const buckets = Math.min(limit ?? DEFAULT_BUCKETS, maxBuckets);
          return { type, data: await run(() => equity(sql, rangeOf({}, buckets * 60_000), 60_000)) };
        }
        default: {
          if (type === 'trades' && !upper)
            throw new HttpError('invalid_request', 'type trades needs a symbol');
          const topic = type as 'trades' | 'orders' | 'fills' | 'alerts';
          const result = await listPage(
            request,
            topic,
            topic,
            { limit },
            { symbol: topic === 'alerts' ? undefined : upper },
          );
          return { type, symbol: upper ?? null, data: result.rows };
        }
      }
    },
  );
};

export default historyRoutes;
