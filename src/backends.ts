/**
 * The trading backends' responses: schemas that every response is validated against, and the mapping of a
 * valid response into state records. No I/O here: plugins/poller.ts calls the backends.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type Config, ConfigFileSchema } from './config/schema.ts';
import { Decimal } from './ingest/schemas.ts';
import type { Json, JsonObject } from './merge-patch.ts';

/** A polled backend: one key of `backend_services` in the config schema, the one list of them. */
export type SourceName = keyof Config['backend_services'];
/** Every backend the hub can poll, configured or not (the keys of `backend_services`). */
export const SOURCE_NAMES = Object.keys(
  ConfigFileSchema.properties.backend_services.properties,
) as SourceName[];

/** A response that does not match its schema; it counts as a failure of its source. */
export class BackendResponseError extends Error {
  override name = 'BackendResponseError';
}

function validator<T extends TSchema>(what: string, schema: T): (value: unknown) => Static<T> {
  const checker = TypeCompiler.Compile(schema);
  return (value) => {
    if (checker.Check(value)) return value;
    const error = checker.Errors(value).First();
    throw new BackendResponseError(
      `${what}: ${error ? `${error.path || '(root)'}: ${error.message}` : 'wrong shape'}`,
    );
  };
}

/** Go's zero time.Time in Unix seconds: how the risk manager sends "never". */
const GO_ZERO_TIME = -62135596800;

// --- order-execution (gRPC, decoded with enums as names and int64 as numbers) ---

const ORDER_STATES = [
  'STATE_UNSPECIFIED',
  'NEW',
  'SUBMITTED',
  'PARTIALLY_FILLED',
  'FILLED',
  'CANCELED',
  'REJECTED',
  'EXPIRED',
];
const GrpcOrder = Type.Object({
  order_id: Type.String({ minLength: 1 }),
  client_order_id: Type.String(),
  symbol: Type.String({ minLength: 1 }),
  side: Type.String(),
  type: Type.String(),
  state: Type.Union(ORDER_STATES.map((s) => Type.Literal(s))),
  time_in_force: Type.String(),
  quantity: Type.Number(),
  price: Type.Number(),
  stop_price: Type.Number(),
  filled_quantity: Type.Number(),
  average_price: Type.Number(),
  fee: Type.Number(),
  fee_asset: Type.String(),
  created_at: Type.Number(),
  updated_at: Type.Number(),
  user_id: Type.String(),
  reduce_only: Type.Boolean(),
  post_only: Type.Boolean(),
  exchange_order_id: Type.String(),
});
const checkOrders = validator('GetOrdersResponse', Type.Object({ orders: Type.Array(GrpcOrder) }));

/** Orders as state records (times stay Unix seconds, as the service sends them). */
export function ordersFromResponse(response: unknown): JsonObject[] {
  return checkOrders(response).orders.map((order) => ({ ...order }) as JsonObject);
}

// --- risk-manager (gRPC) ---

const RiskMetrics = Type.Object({
  margin_ratio: Type.Number(),
  leverage: Type.Number(),
  drawdown_daily: Type.Number(),
  drawdown_max: Type.Number(),
  daily_pnl: Type.Number(),
  unrealized_pnl: Type.Number(),
  total_equity: Type.Number(),
  total_margin_used: Type.Number(),
  position_concentration: Type.Record(Type.String(), Type.Number()),
  limit_utilization: Type.Record(Type.String(), Type.Number()),
  open_positions: Type.Integer(),
  pending_orders: Type.Integer(),
});
const checkRiskMetrics = validator(
  'RiskMetricsResponse',
  Type.Object({ metrics: RiskMetrics, timestamp: Type.Number() }),
);
const checkEmergencyStop = validator(
  'EmergencyStopStatusResponse',
  Type.Object({
    status: Type.Object({
      is_stopped: Type.Boolean(),
      stopped_at: Type.Number(),
      stop_reason: Type.String(),
      triggered_by: Type.String(),
      orders_canceled: Type.Integer(),
      positions_closed: Type.Integer(),
      completed: Type.Boolean(),
      completed_at: Type.Number(),
    }),
  }),
);

/** The `risk` record: the metrics, their timestamp, and the emergency stop (unset times left out). */
export function riskFromResponses(metricsResponse: unknown, stopResponse: unknown): JsonObject {
  const { metrics, timestamp } = checkRiskMetrics(metricsResponse);
  const { status } = checkEmergencyStop(stopResponse);
  const emergencyStop: JsonObject = {};
  for (const [key, value] of Object.entries(status)) {
    if ((key === 'stopped_at' || key === 'completed_at') && (value === GO_ZERO_TIME || value === 0)) continue;
    emergencyStop[key] = value;
  }
  return { ...(metrics as JsonObject), updated_at: timestamp, emergency_stop: emergencyStop };
}

// --- account-monitor (HTTP JSON, decimals as strings) ---

const OptDecimal = Type.Optional(Decimal);
const Time = Type.Optional(Type.Union([Type.String(), Type.Number()]));
const checkAccount = validator(
  'GET /api/account',
  Type.Object({
    pnl: Type.Record(Type.String(), Decimal),
    balances: Type.Record(
      Type.String(),
      Type.Object({
        asset: Type.Optional(Type.String()),
        free: OptDecimal,
        locked: OptDecimal,
        total: Decimal,
        usd_value: OptDecimal,
        last_update: Time,
      }),
    ),
    positions: Type.Record(
      Type.String(),
      Type.Object({
        symbol: Type.Optional(Type.String()),
        quantity: Decimal,
        entry_price: OptDecimal,
        current_price: OptDecimal,
        realized_pnl: OptDecimal,
        unrealized_pnl: OptDecimal,
        total_fees: OptDecimal,
        last_update: Time,
      }),
    ),
    timestamp: Time,
  }),
);

function num(value: string | number | undefined): number | undefined {
  if (value === undefined) return undefined;
  const result = Number(value);
  if (!Number.isFinite(result))
    throw new BackendResponseError(`${JSON.stringify(value)} is not a finite number`);
  return result;
}

/** Copies the defined fields only: a merge patch has no way to carry `undefined`. */
function defined(record: Record<string, Json | undefined>): JsonObject {
  const result: JsonObject = {};
  for (const [key, value] of Object.entries(record)) if (value !== undefined) result[key] = value;
  return result;
}

/**
 * The account monitor's snapshot as an `account` record and `positions` records. `total_balance` is the sum of
 * the balances' USD values when every balance has one; otherwise it is left out rather than guessed.
 */
export function accountFromResponse(body: unknown): { account: JsonObject; positions: JsonObject[] } {
  const response = checkAccount(body);
  const balances: JsonObject = {};
  const details: JsonObject = {};
  let totalUsd: number | undefined = 0;
  for (const [asset, balance] of Object.entries(response.balances)) {
    balances[asset] = num(balance.total)!;
    details[asset] = defined({
      free: num(balance.free),
      locked: num(balance.locked),
      total: num(balance.total),
      usd_value: num(balance.usd_value),
      last_update: balance.last_update,
    });
    totalUsd =
      balance.usd_value === undefined || totalUsd === undefined
        ? undefined
        : totalUsd + num(balance.usd_value)!;
  }
  const pnl: JsonObject = {};
  for (const [key, value] of Object.entries(response.pnl)) pnl[key] = Number(value);
  const account = defined({
    total_balance: totalUsd,
    unrealized_pnl: pnl.unrealized_pnl,
    balances,
    balance_details: details,
    pnl,
    updated_at: response.timestamp,
  });
  const positions: JsonObject[] = [];
  for (const [key, position] of Object.entries(response.positions)) {
    const quantity = num(position.quantity)!;
    if (quantity === 0) continue;
    positions.push(
      defined({
        symbol: (position.symbol ?? key).toUpperCase(),
        side: quantity > 0 ? 'LONG' : 'SHORT',
        quantity: Math.abs(quantity),
        entry_price: num(position.entry_price),
        mark_price: num(position.current_price),
        unrealized_pnl: num(position.unrealized_pnl),
        realized_pnl: num(position.realized_pnl),
        total_fees: num(position.total_fees),
        updated_at: position.last_update,
      }),
    );
  }
  return { account, positions };
}

// --- strategy-engine (HTTP JSON) ---

const checkStatus = validator(
  'GET /status',
  Type.Object({
    mode: Type.Union([Type.Literal('simulation'), Type.Literal('live'), Type.Literal('observation')]),
    active_strategies: Type.Optional(Type.Union([Type.Integer(), Type.Array(Type.String())])),
    signal_queue_size: Type.Optional(Type.Integer()),
  }),
);
const checkServiceInfo = validator(
  'GET /api/service-info',
  Type.Object({
    strategies: Type.Record(Type.String({ minLength: 1 }), Type.Record(Type.String(), Type.Unknown())),
  }),
);

/** One `strategies` record per strategy name, with its metrics and the engine's mode. */
export function strategiesFromResponses(statusBody: unknown, serviceInfoBody: unknown): JsonObject[] {
  const { mode } = checkStatus(statusBody);
  const { strategies } = checkServiceInfo(serviceInfoBody);
  return Object.entries(strategies).map(([name, metrics]) => {
    const record: JsonObject = {};
    for (const [key, value] of Object.entries(metrics)) {
      if (value !== null && value !== undefined) record[key] = value as Json;
    }
    return { ...record, id: name, name, mode };
  });
}
