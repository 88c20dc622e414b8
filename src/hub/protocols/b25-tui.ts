import { toMillis } from '../../ingest/timestamps.ts';
import { isPlainObject, type Json, type JsonObject } from '../../merge-patch.ts';
import type { Command } from '../command.ts';
import type { ChangeView, Frames, Reply, SnapshotView, WireProtocol } from '../protocol.ts';
import { type ChannelMap, parseTypeMessage } from './b25-messages.ts';

/**
 * The protocol of the trading system's terminal UI (b25 `ui/terminal`, websocket.rs `DashboardMessage` and
 * types.rs), which cannot be changed: every frame is one of `positions`, `orders`, `orderbook`, `fills`, `signals`,
 * `alerts`, `ping`, and its serde parser rejects a whole list for one element it cannot read. So lists are sent
 * whole, each only when it changed, with every field it requires, in its spellings; values it has no variant for are
 * mapped to the nearest one, and a required field with no source gets a documented neutral value (docs/protocol.md).
 */

export const TUI_CHANNELS: ChannelMap = {
  positions: ['positions'],
  orders: ['orders'],
  orderbook: ['orderbook'],
  // Carried by the NATS topics once they exist; nothing until then.
  fills: [],
  signals: [],
  alerts: [],
};

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

const num = (value: Json | undefined): number | undefined =>
  typeof value === 'number' && Number.isFinite(value) ? value : undefined;
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
    if (!which.positions && !which.orders && book === undefined) return undefined;
    const frames = this.lists(current(), change.at, which);
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
