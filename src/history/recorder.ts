/**
 * Turns the state's writes into history rows (rows.ts), never one per tick: market data as one row per symbol and
 * second (open, high, low, close of `last_price`, the last bid and ask, how many updates), each new trade and fill,
 * each change of an order's state or filled quantity, each new alert, and the account sampled (and at every change of
 * sign of its unrealized PnL). Pure: the rows go to a HistoryQueue; the plugin writes them.
 */
import { toMillis } from '../ingest/timestamps.ts';
import { finiteNumber, isPlainObject, type Json, type JsonObject } from '../merge-patch.ts';
import type { Topic } from '../topics.ts';
import type { HistoryQueue } from './queue.ts';
import type { HistoryRow } from './rows.ts';

/** The second being aggregated for one symbol. */
interface Second {
  second: number;
  open: number;
  high: number;
  low: number;
  close: number;
  bid: number | null;
  ask: number | null;
  updates: number;
}

/** A column's number: null (SQL's) where the record has none. */
const num = (value: Json | undefined): number | null => finiteNumber(value) ?? null;
const text = (value: Json | undefined): string | null =>
  value === undefined || value === null ? null : String(value);

export class HistoryRecorder {
  private readonly queue: HistoryQueue;
  private readonly now: () => number;
  private readonly seconds = new Map<string, Second>();

  constructor(queue: HistoryQueue, now: () => number = Date.now) {
    this.queue = queue;
    this.now = now;
  }

  /** A write to the state (StateStore.observeWrites). */
  written(topic: Topic, key: string, value: Json | undefined, before: Json | undefined): void {
    switch (topic) {
      case 'market_data':
        if (isPlainObject(value)) this.tick(key, value);
        return;
      case 'trades':
        this.listed('trades', value, before, 'trade_id');
        return;
      case 'fills':
        this.listed('fills', value, before, 'fill_id');
        return;
      case 'orders':
        if (isPlainObject(value)) this.order(value, isPlainObject(before) ? before : undefined);
        return;
      case 'alerts':
        if (isPlainObject(value) && before === undefined) this.alert(value);
        return;
      case 'account':
        if (isPlainObject(value) && isPlainObject(before) && pnlSign(value) !== pnlSign(before))
          this.sampleAccount(value);
        return;
    }
  }

  /** Writes the seconds that are over (every symbol's second before the current one) to the queue. */
  closeSeconds(): void {
    const current = Math.floor(this.now() / 1000);
    for (const [symbol, second] of this.seconds) {
      if (second.second < current) {
        this.pushSecond(symbol, second);
        this.seconds.delete(symbol);
      }
    }
  }

  /** One `account` row: balance, equity (the account's, else balance plus unrealized PnL) and unrealized PnL. */
  sampleAccount(account: Json | undefined): void {
    if (!isPlainObject(account)) return;
    const total = num(account.total_balance);
    const unrealized = num(account.unrealized_pnl);
    const equity = num(account.equity) ?? (total !== null && unrealized !== null ? total + unrealized : null);
    this.queue.push('account', {
      ts: new Date(this.now()),
      total_balance: total,
      equity,
      unrealized_pnl: unrealized,
    });
  }

  private tick(symbol: string, record: JsonObject): void {
    const price = num(record.last_price);
    if (price === null) return;
    const second = Math.floor(this.now() / 1000);
    let current = this.seconds.get(symbol);
    if (current && current.second !== second) {
      this.pushSecond(symbol, current);
      current = undefined;
    }
    if (!current) {
      current = {
        second,
        open: price,
        high: price,
        low: price,
        close: price,
        bid: null,
        ask: null,
        updates: 0,
      };
      this.seconds.set(symbol, current);
    }
    current.high = Math.max(current.high, price);
    current.low = Math.min(current.low, price);
    current.close = price;
    current.bid = num(record.bid_price) ?? current.bid;
    current.ask = num(record.ask_price) ?? current.ask;
    current.updates++;
  }

  private pushSecond(symbol: string, second: Second): void {
    const { open, high, low, close, bid, ask, updates } = second;
    this.queue.push('market_data', {
      ts: new Date(second.second * 1000),
      symbol,
      open,
      high,
      low,
      close,
      bid,
      ask,
      updates,
    });
  }

  /** The items of a trades or fills list the previous list did not have. */
  private listed(
    kind: 'trades' | 'fills',
    value: Json | undefined,
    before: Json | undefined,
    id: string,
  ): void {
    if (!Array.isArray(value)) return;
    const seen = new Set(
      (Array.isArray(before) ? before : []).map((item) => (isPlainObject(item) ? String(item[id]) : '')),
    );
    for (const item of value) {
      if (!isPlainObject(item) || seen.has(String(item[id]))) continue;
      this.queue.push(kind, kind === 'trades' ? this.tradeRow(item) : this.fillRow(item));
    }
  }

  private at(value: Json | undefined): Date {
    return new Date(toMillis(value) ?? this.now());
  }

  private tradeRow(trade: JsonObject): HistoryRow {
    const maker = trade.is_buyer_maker;
    const side = text(trade.side) ?? (typeof maker === 'boolean' ? (maker ? 'SELL' : 'BUY') : null);
    return {
      ts: this.at(trade.timestamp),
      symbol: String(trade.symbol),
      trade_id: String(trade.trade_id),
      price: num(trade.price) ?? 0,
      quantity: num(trade.quantity) ?? 0,
      side,
    };
  }

  private fillRow(fill: JsonObject): HistoryRow {
    return {
      ts: this.at(fill.timestamp),
      symbol: String(fill.symbol),
      fill_id: String(fill.fill_id),
      order_id: text(fill.order_id),
      side: text(fill.side),
      price: num(fill.price) ?? 0,
      quantity: num(fill.quantity) ?? 0,
      fee: num(fill.fee),
      pnl: num(fill.pnl),
    };
  }

  /** An event when the order is new, or its state or filled quantity changed (a poll re-stating it is none). */
  private order(order: JsonObject, before: JsonObject | undefined): void {
    const filled = num(order.filled_quantity) ?? 0;
    if (before && before.state === order.state && (num(before.filled_quantity) ?? 0) === filled) return;
    this.queue.push('orders', {
      ts: this.at(order.updated_at ?? order.created_at),
      order_id: String(order.order_id),
      symbol: String(order.symbol),
      state: String(order.state),
      side: text(order.side),
      type: text(order.type),
      price: num(order.price),
      quantity: num(order.quantity),
      filled_quantity: filled,
      average_price: num(order.average_price),
    });
  }

  private alert(alert: JsonObject): void {
    this.queue.push('alerts', {
      ts: this.at(alert.timestamp),
      id: String(alert.id),
      source: String(alert.source),
      type: String(alert.type),
      severity: String(alert.severity),
      symbol: text(alert.symbol),
      message: String(alert.message ?? ''),
      value: num(alert.value),
      threshold: num(alert.threshold),
    });
  }
}

function pnlSign(account: JsonObject): number {
  return Math.sign(num(account.unrealized_pnl) ?? 0);
}
