/**
 * What a backend payload must look like, per topic, and the error it is refused with. The schemas are the
 * validators; numbers are turned into numbers by normalize.ts, best book levels picked by orderbook.ts.
 */
import { type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type IngestTopic, SYMBOL_PATTERN } from '../topics.ts';

/** A decimal number as some backends send it, as text: `-12`, `0.5`, `1e-8`. */
const DECIMAL_PATTERN = '^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$';
export const DECIMAL = new RegExp(DECIMAL_PATTERN);
/** Some backends send decimals as strings: both are accepted, numbers are stored. */
export const Decimal = Type.Union([Type.Number(), Type.String({ pattern: DECIMAL_PATTERN })]);

const OptNum = Type.Optional(Type.Union([Decimal, Type.Null()]));
const OptStr = Type.Optional(Type.Union([Type.String(), Type.Null()]));
const OptTime = Type.Optional(Type.Union([Type.Number(), Type.String(), Type.Null()]));
const Id = Type.Union([Type.String({ minLength: 1, maxLength: 128 }), Type.Integer()]);
const SymbolName = Type.String({ pattern: SYMBOL_PATTERN.source });
/** A time as the services send it: RFC 3339 text, or Unix seconds or milliseconds. */
const Time = Type.Union([Type.Number(), Type.String({ minLength: 1, maxLength: 64 })]);
const Text = (maxLength: number) => Type.String({ maxLength });
const OptDecimalMap = Type.Optional(Type.Record(Type.String(), Decimal));

/** Payload schemas as the real publishers send them; fields beyond these are kept. */
export const PayloadSchemas = {
  market_data: Type.Object({
    symbol: Type.Optional(SymbolName),
    last_price: Decimal,
    bid_price: OptNum,
    ask_price: OptNum,
    volume_24h: OptNum,
    high_24h: OptNum,
    low_24h: OptNum,
    updated_at: OptTime,
  }),
  orderbook: Type.Object({
    symbol: Type.Optional(SymbolName),
    bids: Type.Record(Type.String(), Decimal),
    asks: Type.Record(Type.String(), Decimal),
    last_update_id: OptNum,
    timestamp: OptNum,
    initialized: Type.Optional(Type.Boolean()),
  }),
  trades: Type.Object({
    symbol: Type.Optional(SymbolName),
    trade_id: Id,
    price: Decimal,
    quantity: Decimal,
    timestamp: Decimal,
    is_buyer_maker: Type.Optional(Type.Boolean()),
  }),
  orders: Type.Object({
    order_id: Id,
    client_order_id: OptStr,
    symbol: SymbolName,
    side: OptStr,
    type: OptStr,
    state: Type.String({ minLength: 1 }),
    time_in_force: OptStr,
    quantity: OptNum,
    price: OptNum,
    stop_price: OptNum,
    filled_quantity: OptNum,
    average_price: OptNum,
    fee: OptNum,
    fee_asset: OptStr,
    created_at: OptTime,
    updated_at: OptTime,
  }),
  positions: Type.Object({
    symbol: SymbolName,
    side: OptStr,
    quantity: Decimal,
    entry_price: OptNum,
    mark_price: OptNum,
    unrealized_pnl: OptNum,
    realized_pnl: OptNum,
    liquidation_price: OptNum,
    updated_at: OptTime,
  }),
  account: Type.Object({
    total_balance: OptNum,
    available_balance: OptNum,
    margin_used: OptNum,
    unrealized_pnl: OptNum,
    balances: Type.Optional(Type.Record(Type.String(), Decimal)),
    updated_at: OptTime,
  }),
  strategies: Type.Object({
    id: Id,
    name: OptStr,
    status: OptStr,
    pnl: OptNum,
    trades: OptNum,
    win_rate: OptNum,
    updated_at: OptTime,
  }),
  /** A fill as order-execution (`fill_id`) or the account monitor's publisher (`id`) sends it; one of the two ids. */
  fills: Type.Object({
    fill_id: Type.Optional(Id),
    id: Type.Optional(Id),
    order_id: Type.Optional(Id),
    symbol: SymbolName,
    side: OptStr,
    price: Decimal,
    quantity: Decimal,
    fee: OptNum,
    fee_asset: OptStr,
    fee_currency: OptStr,
    pnl: OptNum,
    is_maker: Type.Optional(Type.Boolean()),
    timestamp: Time,
  }),
  /** An alert as the account monitor sends it on `trading.alerts` (the risk manager's form: riskAlertChecker). */
  alerts: Type.Object({
    type: Type.String({ minLength: 1, maxLength: 64 }),
    severity: Type.String({ minLength: 1, maxLength: 16 }),
    symbol: Type.Optional(SymbolName),
    message: Text(4096),
    value: OptNum,
    threshold: OptNum,
    timestamp: Time,
  }),
  /** The risk manager's `risk.metrics` (the RiskMetrics fields of proto/risk.proto, `timestamp` in Unix seconds). */
  risk: Type.Object({
    margin_ratio: OptNum,
    leverage: OptNum,
    drawdown_daily: OptNum,
    drawdown_max: OptNum,
    daily_pnl: OptNum,
    unrealized_pnl: OptNum,
    total_equity: OptNum,
    total_margin_used: OptNum,
    position_concentration: OptDecimalMap,
    limit_utilization: OptDecimalMap,
    open_positions: OptNum,
    pending_orders: OptNum,
    timestamp: Time,
  }),
} satisfies Record<IngestTopic, TSchema>;

/**
 * An alert as the risk manager sends it on `risk.alerts.<level>`: a policy violation (`policy_*`, `metric_value`,
 * `threshold_value`, `message`) or, at level `emergency`, an emergency stop (`type`, `reason`, `triggered_by`).
 */
export const riskAlertChecker = TypeCompiler.Compile(
  Type.Object({
    level: Type.String({ minLength: 1, maxLength: 16 }),
    type: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    message: Type.Optional(Text(4096)),
    reason: Type.Optional(Text(4096)),
    triggered_by: Type.Optional(Text(256)),
    policy_id: Type.Optional(Text(256)),
    policy_name: Type.Optional(Text(256)),
    policy_type: Type.Optional(Text(64)),
    metric: Type.Optional(Text(128)),
    metric_value: OptNum,
    threshold_value: OptNum,
    timestamp: Time,
  }),
);

/** The compiled check of each topic's payload. */
export const checkers = Object.fromEntries(
  Object.entries(PayloadSchemas).map(([topic, schema]) => [topic, TypeCompiler.Compile(schema)]),
) as { [T in IngestTopic]: ReturnType<typeof TypeCompiler.Compile<(typeof PayloadSchemas)[T]>> };

/** An order as order-execution publishes it, `{order, update_type}`: the order inside is the payload. */
export const orderEnvelopeChecker = TypeCompiler.Compile(
  Type.Object({ order: Type.Object({}), update_type: OptStr }),
);

/** The fields of each payload that are numbers, whatever the JSON carried. */
export const NUMERIC_FIELDS: Record<IngestTopic, readonly string[]> = {
  market_data: ['last_price', 'bid_price', 'ask_price', 'volume_24h', 'high_24h', 'low_24h'],
  orderbook: ['last_update_id', 'timestamp'],
  trades: ['price', 'quantity', 'timestamp'],
  orders: ['quantity', 'price', 'stop_price', 'filled_quantity', 'average_price', 'fee'],
  positions: ['quantity', 'entry_price', 'mark_price', 'unrealized_pnl', 'realized_pnl', 'liquidation_price'],
  account: ['total_balance', 'available_balance', 'margin_used', 'unrealized_pnl'],
  strategies: ['pnl', 'trades', 'win_rate'],
  fills: ['price', 'quantity', 'fee', 'pnl'],
  alerts: ['value', 'threshold', 'metric_value', 'threshold_value'],
  risk: [
    'margin_ratio',
    'leverage',
    'drawdown_daily',
    'drawdown_max',
    'daily_pnl',
    'unrealized_pnl',
    'total_equity',
    'total_margin_used',
    'open_positions',
    'pending_orders',
  ],
};

/** The limits a valid payload can still be refused by: each is counted apart (`dashboard_ingest_refused_total`). */
export const LIMITS = ['max_record_size', 'max_entries', 'max_symbols', 'max_state_size'] as const;
export type Limit = (typeof LIMITS)[number];

/** Why a payload was rejected; also the label of `dashboard_ingest_invalid_total`'s log line. */
export class PayloadError extends Error {
  readonly topic: string;
  /** The limit that refused it, when the payload itself was valid. */
  readonly limit: Limit | undefined;
  constructor(topic: string, message: string, limit?: Limit) {
    super(message);
    this.topic = topic;
    this.limit = limit;
  }
}

/** The error for a payload its topic's schema refuses: the schema's first complaint. */
export function schemaError(topic: IngestTopic, payload: unknown): PayloadError {
  const error = checkers[topic].Errors(payload).First();
  const where = error?.path ? `${error.path}: ` : '';
  return new PayloadError(topic, `invalid ${topic} payload: ${where}${error?.message ?? 'wrong shape'}`);
}
