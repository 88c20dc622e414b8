import type { ActionResult } from '../../actions/types.ts';
import { toMillis } from '../../ingest/timestamps.ts';
import { isPlainObject, type Json, type JsonObject, finiteNumber as num } from '../../merge-patch.ts';
import type { Command } from '../command.ts';
import type { ChangeView, Frames, Reply, SnapshotView, WireProtocol } from '../protocol.ts';
import { type ChannelMap, parseTypeMessage } from './b25-messages.ts';

/**
 * The protocol of the trading system's web dashboard (b25 `ui/web`, useWebSocket.ts and store/trading.ts), which
 * cannot be changed: a `snapshot`, then `update`s carrying whole market_data entries and the account, and one
 * message per order, position, trade, book and health list. Field names in both spellings (the UI's camelCase and
 * the older service's snake_case). Never a message type it does not route. See docs/protocol.md.
 */

/** The web UI's channels: its `market_data` also carries the books (the older service put them there). */
export const WEB_CHANNELS: ChannelMap = {
  market_data: ['market_data', 'orderbook'],
  orderbook: ['orderbook'],
  account: ['account'],
  positions: ['positions'],
  orders: ['orders'],
  trades: ['trades'],
  strategies: ['strategies'],
  system_health: ['system'],
  system: ['system'],
  // The UI subscribes to these but routes no message type for them (useWebSocket.ts): nothing is sent.
  fills: [],
  alerts: [],
  signals: [],
};

/** The UI keeps the newest 100 trades (store/trading.ts addTrade). */
const TRADES_SENT = 100;
/** Order states the UI has no row for: they are sent as CANCELED so that it removes the order. */
const TERMINAL = new Set(['FILLED', 'CANCELED', 'CANCELLED', 'REJECTED', 'EXPIRED']);
/** types/index.ts Order status has NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED; anything else is NEW. */
const STATUS: Record<string, string> = {
  NEW: 'NEW',
  PARTIALLY_FILLED: 'PARTIALLY_FILLED',
  FILLED: 'FILLED',
  CANCELED: 'CANCELED',
  CANCELLED: 'CANCELED',
  REJECTED: 'CANCELED',
  EXPIRED: 'CANCELED',
};
const TYPE: Record<string, string> = { POST_ONLY: 'LIMIT' };

const str = (value: Json | undefined): string | undefined => (typeof value === 'string' ? value : undefined);

/** Copies the defined entries of `fields` onto `target`: a field the state has no source for is left out. */
function assign(target: JsonObject, fields: Record<string, Json | undefined>): JsonObject {
  for (const [name, value] of Object.entries(fields)) if (value !== undefined) target[name] = value;
  return target;
}

export function webMarketData(entry: JsonObject): JsonObject {
  return assign(
    { ...entry },
    { bid: num(entry.bid_price), ask: num(entry.ask_price), timestamp: toMillis(entry.updated_at) },
  );
}

/** `at`: the time it is sent, the order's `timestamp` when it carries none (the Orders page formats it). */
export function webOrder(order: JsonObject, at: number): JsonObject {
  const state = String(order.state ?? '').toUpperCase();
  const type = str(order.type)?.toUpperCase();
  return assign(
    { ...order },
    {
      id: String(order.order_id),
      side: str(order.side)?.toUpperCase(),
      type: type === undefined ? undefined : (TYPE[type] ?? type),
      status: STATUS[state] ?? 'NEW',
      state,
      filledQuantity: num(order.filled_quantity),
      filled: num(order.filled_quantity),
      avgFillPrice: num(order.average_price),
      timestamp: toMillis(order.updated_at ?? order.created_at) ?? at,
    },
  );
}

/** LONG or SHORT: the position's side when it says, else the sign of its quantity. */
function positionSide(position: JsonObject): 'LONG' | 'SHORT' {
  const side = str(position.side)?.toUpperCase();
  if (side === 'LONG' || side === 'BUY') return 'LONG';
  if (side === 'SHORT' || side === 'SELL') return 'SHORT';
  return (num(position.quantity) ?? 0) < 0 ? 'SHORT' : 'LONG';
}

export function webPosition(position: JsonObject): JsonObject {
  const quantity = num(position.quantity);
  return assign(
    { ...position },
    {
      side: positionSide(position),
      size: quantity === undefined ? undefined : Math.abs(quantity),
      entryPrice: num(position.entry_price),
      markPrice: num(position.mark_price),
      unrealizedPnl: num(position.unrealized_pnl),
      realizedPnl: num(position.realized_pnl),
      liquidationPrice: num(position.liquidation_price),
      leverage: num(position.leverage),
      margin: num(position.margin),
      timestamp: toMillis(position.updated_at),
    },
  );
}

export function webAccount(account: JsonObject): JsonObject {
  const total = num(account.total_balance);
  const unrealized = num(account.unrealized_pnl);
  // Derived, documented: equity is the balance plus the unrealized PnL when the account carries no equity.
  const equity =
    num(account.equity) ?? (total !== undefined && unrealized !== undefined ? total + unrealized : undefined);
  return assign(
    { ...account },
    {
      balance: total,
      equity,
      availableBalance: num(account.available_balance),
      unrealizedPnl: unrealized,
      realizedPnl: num(account.realized_pnl),
      marginRatio: num(account.margin_ratio),
      totalPnl24h: num(account.total_pnl_24h),
      timestamp: toMillis(account.updated_at),
    },
  );
}

export function webTrade(trade: JsonObject): JsonObject {
  // The taker's side: a buyer who is the maker means the taker sold.
  const side =
    typeof trade.is_buyer_maker === 'boolean' ? (trade.is_buyer_maker ? 'SELL' : 'BUY') : undefined;
  return assign(
    { ...trade },
    {
      id: String(trade.trade_id),
      side: str(trade.side)?.toUpperCase() ?? side,
      timestamp: toMillis(trade.timestamp),
    },
  );
}

export function webOrderBook(book: JsonObject, at: number): JsonObject {
  const levels = (side: Json | undefined) =>
    Array.isArray(side)
      ? side.map((level) => (Array.isArray(level) ? { price: level[0], volume: level[1] } : level))
      : [];
  return assign(
    { symbol: book.symbol as string, bids: levels(book.bids), asks: levels(book.asks) },
    { timestamp: toMillis(book.timestamp) ?? at },
  );
}

/** The health list of the System page: the hub, Redis and each backend source, from the `system` topic. */
export function webSystemHealth(system: JsonObject, at: number): JsonObject[] {
  const health: JsonObject[] = [];
  const startedAt = toMillis(system.started_at);
  health.push(
    assign(
      { service: 'dashboard-server', status: 'healthy', lastCheck: at },
      { uptime: startedAt === undefined ? undefined : Math.max(0, Math.round((at - startedAt) / 1000)) },
    ),
  );
  for (const service of ['redis', 'nats']) {
    const connection = isPlainObject(system[service]) ? system[service] : undefined;
    if (!connection) continue;
    const status =
      connection.status === 'up' ? 'healthy' : connection.status === 'down' ? 'down' : 'degraded';
    health.push(assign({ service, status }, { lastCheck: toMillis(connection.since) }));
  }
  const sources = isPlainObject(system.sources) ? system.sources : {};
  for (const [name, source] of Object.entries(sources)) {
    if (!isPlainObject(source)) continue;
    const status = source.status === 'ok' ? 'healthy' : source.status === 'down' ? 'down' : 'degraded';
    const checks = [toMillis(source.last_success), toMillis(source.last_error)].filter(
      (value): value is number => value !== undefined,
    );
    health.push(
      assign({ service: name, status }, { lastCheck: checks.length > 0 ? Math.max(...checks) : undefined }),
    );
  }
  return health;
}

/** An action's outcome as the UI's `order` message: the order's new state, or REJECTED with the reason. */
export function webActionOrder(result: ActionResult): JsonObject {
  const status = result.outcome === 'accepted' ? (result.state ?? 'NEW') : 'REJECTED';
  return assign(
    { status, state: status },
    {
      id: result.orderId ?? result.clientOrderId,
      order_id: result.orderId,
      client_order_id: result.clientOrderId,
      symbol: result.symbol,
      side: result.side,
      type: result.type,
      quantity: result.quantity,
      price: result.price,
      action: result.kind,
      reason: result.reason,
      timestamp: result.at,
    },
  );
}

const frame = (message: JsonObject) => Buffer.from(JSON.stringify(message));
const entries = (section: Json | undefined): [string, JsonObject][] =>
  isPlainObject(section)
    ? Object.entries(section).filter((pair): pair is [string, JsonObject] => isPlainObject(pair[1]))
    : [];

class B25WebProtocol implements WireProtocol {
  readonly name = 'b25-web';
  readonly format = 'json';
  readonly key = 'b25-web/json';
  readonly sendOptions = { binary: false };

  parse(data: Buffer, binary: boolean): Command {
    return parseTypeMessage(data, binary, WEB_CHANNELS, true);
  }

  snapshot(view: SnapshotView): Frames {
    const { data } = view;
    const snapshot: JsonObject = {};
    if (data.market_data !== undefined)
      snapshot.market_data = Object.fromEntries(
        entries(data.market_data).map(([s, e]) => [s, webMarketData(e)]),
      );
    if (data.orders !== undefined)
      snapshot.orders = entries(data.orders)
        .filter(([, order]) => !TERMINAL.has(String(order.state).toUpperCase()))
        .map(([, order]) => webOrder(order, view.at));
    if (data.positions !== undefined)
      snapshot.positions = Object.fromEntries(entries(data.positions).map(([s, p]) => [s, webPosition(p)]));
    if (isPlainObject(data.account)) snapshot.account = webAccount(data.account);
    if (data.strategies !== undefined) snapshot.strategies = data.strategies;
    const frames = [frame({ type: 'snapshot', seq: view.sequence, timestamp: view.at, data: snapshot })];
    for (const [, book] of entries(data.orderbook))
      frames.push(frame({ type: 'orderbook', data: webOrderBook(book, view.at) }));
    // Oldest first: the UI puts each new trade on top.
    const trades = Object.values(isPlainObject(data.trades) ? data.trades : {})
      .flatMap((list) => (Array.isArray(list) ? list.filter(isPlainObject) : []))
      .sort((a, b) => (toMillis(a.timestamp) ?? 0) - (toMillis(b.timestamp) ?? 0))
      .slice(-TRADES_SENT);
    for (const trade of trades) frames.push(frame({ type: 'trade', data: webTrade(trade) }));
    if (isPlainObject(data.system))
      frames.push(frame({ type: 'system_health', data: webSystemHealth(data.system, view.at) }));
    return frames;
  }

  change(change: ChangeView): Frames {
    const { changes } = change;
    const frames: Buffer[] = [];
    // The UI replaces each entry it is sent (it does not merge): whole entries, never a removal it cannot read.
    const updates: JsonObject = {};
    const prices: JsonObject = {};
    for (const symbol of keysOf(changes.market_data)) {
      const entry = change.entry('market_data', symbol);
      if (isPlainObject(entry)) prices[symbol] = webMarketData(entry);
    }
    if (Object.keys(prices).length > 0) updates.market_data = prices;
    if (changes.account !== undefined) {
      const account = change.entry('account');
      if (isPlainObject(account)) updates.account = webAccount(account);
    }
    if (Object.keys(updates).length > 0)
      frames.push(frame({ type: 'update', seq: change.sequence, timestamp: change.at, changes: updates }));
    for (const symbol of keysOf(changes.orderbook)) {
      const book = change.entry('orderbook', symbol);
      if (isPlainObject(book)) frames.push(frame({ type: 'orderbook', data: webOrderBook(book, change.at) }));
    }
    for (const id of keysOf(changes.orders)) {
      const order = change.entry('orders', id);
      // An order gone from the state (swept, or no longer listed by order-execution) leaves the UI too.
      const data = isPlainObject(order)
        ? webOrder(order, change.at)
        : { id, order_id: id, status: 'CANCELED' };
      frames.push(frame({ type: 'order', data }));
    }
    for (const symbol of keysOf(changes.positions)) {
      const position = change.entry('positions', symbol);
      if (isPlainObject(position)) frames.push(frame({ type: 'position', data: webPosition(position) }));
      else {
        // The UI has no removal for a position: a closed one is sent with size 0.
        const before = change.before('positions', symbol);
        const side = isPlainObject(before) ? positionSide(before) : 'LONG';
        frames.push(
          frame({ type: 'position', data: { symbol, side, size: 0, quantity: 0, timestamp: change.at } }),
        );
      }
    }
    for (const symbol of keysOf(changes.trades)) frames.push(...this.newTrades(change, symbol));
    if (changes.system !== undefined) {
      const system = change.entry('system');
      if (isPlainObject(system))
        frames.push(frame({ type: 'system_health', data: webSystemHealth(system, change.at) }));
    }
    return frames.length > 0 ? frames : undefined;
  }

  /** The trades of `symbol` the clients have not been sent, oldest first. */
  private newTrades(change: ChangeView, symbol: string): Buffer[] {
    const now = change.entry('trades', symbol);
    if (!Array.isArray(now)) return [];
    const before = change.before('trades', symbol);
    const seen = new Set(
      Array.isArray(before) ? before.map((t) => (isPlainObject(t) ? String(t.trade_id) : '')) : [],
    );
    return now
      .filter((trade): trade is JsonObject => isPlainObject(trade) && !seen.has(String(trade.trade_id)))
      .reverse()
      .map((trade) => frame({ type: 'trade', data: webTrade(trade) }));
  }

  reply(reply: Reply): Frames {
    switch (reply.type) {
      case 'pong':
        // The UI computes its latency as now - timestamp: its own ping time, as a number.
        return frame({ type: 'pong', timestamp: reply.echo ?? reply.at });
      case 'action_result':
        return frame({ type: 'order', data: webActionOrder(reply.result) });
      default:
        // subscribed, unsubscribed, authenticated, error: the UI routes none of them.
        return undefined;
    }
  }
}

function keysOf(section: Json | undefined): string[] {
  return isPlainObject(section) ? Object.keys(section) : [];
}

/** Holds no per-connection state: one instance serves every b25 web connection. */
export const b25WebProtocol: WireProtocol = new B25WebProtocol();
