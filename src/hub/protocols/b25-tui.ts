import { toMillis } from '../../ingest/timestamps.ts';
import { isPlainObject, type Json, type JsonObject, finiteNumber as num } from '../../merge-patch.ts';
import type { Command } from '../command.ts';
import type { ChangeView, Frames, Reply, SnapshotView, WireProtocol } from '../protocol.ts';
import { type ChannelMap, parseTypeMessage } from './b25-messages.ts';

/**
 * The protocol of the trading system's terminal UI (b25 `ui/terminal`, websocket.rs `DashboardMessage` and
 * types.rs), which cannot be changed: every frame is one of `positions`, `orders`, `orderbook`, `fills`, `signals`,
 * `alerts`, `ping`, and its serde parser rejects a whole list for one element it cannot read. So lists are sent
 * whole, each only when it changed, with every field it requires, in its spellings; values it has no variant for are
 * mapped to the nearest one, and a required field with no source gets a documented neutral value (docs/protocol.md).
 * Fills and alerts are the exception: the terminal puts each item it receives on top of its panel, so those frames
 * carry only the items it has not been sent, oldest first.
 */

export const TUI_CHANNELS: ChannelMap = {
  positions: ['positions'],
  orders: ['orders'],
  orderbook: ['orderbook'],
  fills: ['fills'],
  // No service publishes strategy signals anywhere the hub reads: nothing is sent.
  signals: [],
  alerts: ['alerts'],
};

/**
 * The most fills and alerts a snapshot carries (the newest): the terminal shows 50 fills and 100 alerts by default
 * (config.rs max_fills_display, max_alerts_display) and drops the rest.
 */
const LIST_SENT = 100;
/** types.rs AlertLevel has Info, Warning, Error. */
const ALERT_LEVEL: Record<string, string> = { INFO: 'Info', WARNING: 'Warning', CRITICAL: 'Error' };

/** types.rs OrderStatus has New, PartiallyFilled, Filled, Canceled, Rejected. */
const STATUS: Record<string, string> = {
  NEW: 'New',
  SUBMITTED: 'New',
  PENDING: 'New',
  PARTIALLY_FILLED: 'PartiallyFilled',
  FILLED: 'Filled',
  CANCELED: 'Canceled',
  CANCELLED: 'Canceled',
  EXPIRED: 'Canceled',
  REJECTED: 'Rejected',
};
/** types.rs OrderType has Limit, Market, StopLimit, StopMarket. */
const ORDER_TYPE: Record<string, string> = {
  LIMIT: 'Limit',
  MARKET: 'Market',
  STOP_LIMIT: 'StopLimit',
  STOP_MARKET: 'StopMarket',
  POST_ONLY: 'Limit',
};
const SIDE: Record<string, string> = { BUY: 'Buy', SELL: 'Sell' };

const rfc3339 = (ms: number) => new Date(ms).toISOString();

/**
 * An order as types.rs `Order`, or undefined for one it could not read at all (no side): left out of the list, so
 * the list still parses. Neutral values: price 0 for an order with none (a market order), filled_size 0, the time
 * it is sent when the order carries none; an unknown state is `New`, an unknown type `Limit`.
 */
export function tuiOrder(order: JsonObject, at: number): JsonObject | undefined {
  const side = SIDE[String(order.side ?? '').toUpperCase()];
  if (side === undefined) return undefined;
  return {
    // serde_json refuses a lone surrogate anywhere in a frame, and with it the whole list.
    id: String(order.order_id).toWellFormed(),
    symbol: String(order.symbol),
    side,
    order_type: ORDER_TYPE[String(order.type ?? '').toUpperCase()] ?? 'Limit',
    price: num(order.price) ?? 0,
    size: num(order.quantity) ?? 0,
    filled_size: num(order.filled_quantity) ?? 0,
    status: STATUS[String(order.state ?? '').toUpperCase()] ?? 'New',
    timestamp: rfc3339(toMillis(order.updated_at ?? order.created_at) ?? at),
  };
}

/**
 * A position as types.rs `Position`. `current_price` is the mark price, else the entry price; `pnl_percent` is the
 * unrealized PnL over the entry value (0 when either is unknown).
 */
export function tuiPosition(position: JsonObject): JsonObject {
  const quantity = num(position.quantity) ?? 0;
  const size = Math.abs(quantity);
  const entry = num(position.entry_price) ?? 0;
  const pnl = num(position.unrealized_pnl) ?? 0;
  const sideName = String(position.side ?? '').toUpperCase();
  const long =
    sideName === 'LONG' ||
    sideName === 'BUY' ||
    (sideName !== 'SHORT' && sideName !== 'SELL' && quantity >= 0);
  const value = entry * size;
  return {
    symbol: String(position.symbol),
    size,
    entry_price: entry,
    current_price: num(position.mark_price) ?? entry,
    side: long ? 'Long' : 'Short',
    unrealized_pnl: pnl,
    pnl_percent: value > 0 ? (pnl / value) * 100 : 0,
  };
}

/** A fill as types.rs `Fill`, or undefined without a side it knows. Neutral values: `order_id` "", fee and pnl 0. */
export function tuiFill(fill: JsonObject): JsonObject | undefined {
  const side = SIDE[String(fill.side ?? '').toUpperCase()];
  if (side === undefined) return undefined;
  return {
    id: String(fill.fill_id).toWellFormed(),
    order_id: String(fill.order_id ?? '').toWellFormed(),
    symbol: String(fill.symbol),
    side,
    price: num(fill.price) ?? 0,
    size: num(fill.quantity) ?? 0,
    fee: num(fill.fee) ?? 0,
    pnl: num(fill.pnl) ?? 0,
    timestamp: rfc3339(num(fill.timestamp) ?? 0),
  };
}

/** An alert as types.rs `Alert`: CRITICAL is its `Error` level. */
export function tuiAlert(alert: JsonObject): JsonObject {
  return {
    id: String(alert.id),
    level: ALERT_LEVEL[String(alert.severity)] ?? 'Info',
    message: String(alert.message ?? '').toWellFormed(),
    timestamp: rfc3339(num(alert.timestamp) ?? 0),
  };
}

/** The newest `max` of `items`, oldest first (the terminal puts each on top as it reads it). */
function oldestFirst(items: JsonObject[], max: number): JsonObject[] {
  const sorted = items.sort((a, b) => (num(a.timestamp) ?? 0) - (num(b.timestamp) ?? 0));
  return sorted.length > max ? sorted.slice(sorted.length - max) : sorted;
}

/** An order book as types.rs `OrderBook`: `[price, size]` pairs and an RFC 3339 time (the time sent when none). */
export function tuiOrderBook(book: JsonObject, at: number): JsonObject {
  const levels = (side: Json | undefined) =>
    Array.isArray(side)
      ? side.filter(
          (level): level is [number, number] =>
            Array.isArray(level) && typeof level[0] === 'number' && typeof level[1] === 'number',
        )
      : [];
  return {
    symbol: String(book.symbol),
    bids: levels(book.bids).map(([price, size]) => [price, size]),
    asks: levels(book.asks).map(([price, size]) => [price, size]),
    timestamp: rfc3339(toMillis(book.timestamp) ?? at),
  };
}

const frame = (message: JsonObject) => Buffer.from(JSON.stringify(message));
const values = (section: Json | undefined): JsonObject[] =>
  isPlainObject(section) ? Object.values(section).filter(isPlainObject) : [];
const listed = (list: Json | undefined): JsonObject[] =>
  Array.isArray(list) ? list.filter(isPlainObject) : [];
const keysOf = (section: Json | undefined) => (isPlainObject(section) ? Object.keys(section) : []);

function fillsFrame(fills: JsonObject[]): Buffer | undefined {
  const data = oldestFirst(fills, LIST_SENT)
    .map(tuiFill)
    .filter((fill): fill is JsonObject => fill !== undefined);
  return data.length > 0 ? frame({ type: 'fills', data }) : undefined;
}

function alertsFrame(alerts: JsonObject[]): Buffer | undefined {
  return alerts.length > 0
    ? frame({ type: 'alerts', data: oldestFirst(alerts, LIST_SENT).map(tuiAlert) })
    : undefined;
}

/** The fills of the changed symbols that the receiving clients have not been sent (not in their view before). */
function newFills(change: ChangeView): JsonObject[] {
  const fills: JsonObject[] = [];
  for (const symbol of keysOf(change.changes.fills)) {
    const sent = new Set(listed(change.before('fills', symbol)).map((fill) => String(fill.fill_id)));
    for (const fill of listed(change.entry('fills', symbol)))
      if (!sent.has(String(fill.fill_id))) fills.push(fill);
  }
  return fills;
}

/** The alerts added by this change (an evicted one is a deletion: the terminal keeps its own list). */
function newAlerts(change: ChangeView): JsonObject[] {
  const alerts: JsonObject[] = [];
  const changed = change.changes.alerts;
  for (const id of keysOf(changed)) {
    const alert = (changed as JsonObject)[id];
    if (isPlainObject(alert) && change.before('alerts', id) === undefined) {
      const whole = change.entry('alerts', id);
      if (isPlainObject(whole)) alerts.push(whole);
    }
  }
  return alerts;
}

class B25TuiProtocol implements WireProtocol {
  readonly name = 'b25-tui';
  readonly format = 'json';
  readonly key: string;
  readonly sendOptions = { binary: false };
  /** legacy.tui_orderbook_symbol: the one book the terminal shows (it never says which it wants). */
  private readonly bookSymbol: string | undefined;

  constructor(bookSymbol: string | undefined) {
    this.bookSymbol = bookSymbol?.toUpperCase();
    this.key = `b25-tui/json/${this.bookSymbol ?? ''}`;
  }

  parse(data: Buffer, binary: boolean): Command {
    return parseTypeMessage(data, binary, TUI_CHANNELS, false);
  }

  /** The symbol whose book is sent: the configured one, else the first symbol that has a book. */
  private symbolOf(books: Json | undefined): string | undefined {
    if (this.bookSymbol !== undefined) return this.bookSymbol;
    return isPlainObject(books) ? Object.keys(books)[0] : undefined;
  }

  private lists(data: JsonObject, at: number, which: { positions: boolean; orders: boolean; book?: string }) {
    const frames: Buffer[] = [];
    if (which.positions && data.positions !== undefined)
      frames.push(frame({ type: 'positions', data: values(data.positions).map(tuiPosition) }));
    if (which.orders && data.orders !== undefined) {
      const orders = values(data.orders)
        .map((order) => tuiOrder(order, at))
        .filter((order): order is JsonObject => order !== undefined);
      frames.push(frame({ type: 'orders', data: orders }));
    }
    if (which.book !== undefined) {
      const book = isPlainObject(data.orderbook) ? data.orderbook[which.book] : undefined;
      if (isPlainObject(book)) frames.push(frame({ type: 'orderbook', data: tuiOrderBook(book, at) }));
    }
    return frames;
  }

  snapshot(view: SnapshotView): Frames {
    const book = this.symbolOf(view.data.orderbook);
    const frames = this.lists(view.data, view.at, { positions: true, orders: true, book });
    const fills = fillsFrame(
      isPlainObject(view.data.fills) ? Object.values(view.data.fills).flatMap(listed) : [],
    );
    if (fills) frames.push(fills);
    const alerts = alertsFrame(values(view.data.alerts));
    if (alerts) frames.push(alerts);
    return frames.length > 0 ? frames : undefined;
  }

  change(change: ChangeView): Frames {
    const { changes } = change;
    let view: JsonObject | undefined;
    const current = () => (view ??= change.view());
    let book: string | undefined;
    if (isPlainObject(changes.orderbook)) {
      book = this.symbolOf(current().orderbook);
      if (book !== undefined && changes.orderbook[book] === undefined) book = undefined;
    }
    const which = { positions: changes.positions !== undefined, orders: changes.orders !== undefined, book };
    const frames =
      which.positions || which.orders || book !== undefined ? this.lists(current(), change.at, which) : [];
    const fills = changes.fills === undefined ? undefined : fillsFrame(newFills(change));
    if (fills) frames.push(fills);
    const alerts = changes.alerts === undefined ? undefined : alertsFrame(newAlerts(change));
    if (alerts) frames.push(alerts);
    return frames.length > 0 ? frames : undefined;
  }

  reply(_reply: Reply): Frames {
    // Its parser reads none of subscribed, pong, error, authenticated: a frame of another type fails to parse.
    return undefined;
  }

  heartbeat(at: number): Frames {
    return frame({ type: 'ping', timestamp: at });
  }
}

/** The terminal UI's protocol; one instance per configured book symbol serves every such connection. */
export function b25TuiProtocol(bookSymbol: string | undefined): WireProtocol {
  return new B25TuiProtocol(bookSymbol);
}
