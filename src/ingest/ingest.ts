// Over 350 lines: every write to the state goes through this class; each topic's rule sits beside the limits it obeys.
/**
 * The write path of ingest: per-topic rules (book depth, trades and fills kept, alerts kept, order precedence,
 * terminal order retention) and the limits of the state (entries per topic, symbols, the total budget). One path
 * for every source: Redis and NATS messages (handleMessage) and polled sections (replaceSection, replaceAccount,
 * replaceSingle). Knows nothing of Redis, NATS or the backends.
 */
import type { Json, JsonObject } from '../merge-patch.ts';
import { SINGLE, type StateStore } from '../state.ts';
import {
  INGEST_TOPICS,
  type IngestTopic,
  SYMBOL_PATTERN,
  SYMBOL_SCOPED_TOPICS,
  type Topic,
} from '../topics.ts';
import { AlertBook, isEmergencyStop } from './alerts.ts';
import {
  countAccepted,
  countFailed,
  type IngestCounters,
  type MessageSource,
  newCounters,
} from './counters.ts';
import { checkWrite } from './limits.ts';
import { type Prepared, RecordSize, UNBOUNDED, withoutNulls, withSymbolSize } from './normalize.ts';
import { isStaleOrder, TerminalOrders } from './orders.ts';
import { type PrepareOptions, preparePayload } from './prepare.ts';
import { checkSection, isNewer, type PolledSection, planSection } from './reconcile.ts';
import { riskWithMetrics, riskWithStop } from './risk.ts';
import { PayloadError } from './schemas.ts';
import { SymbolTable } from './symbols.ts';
import { TradeLists } from './trades.ts';

export interface IngestOptions {
  orderbookDepth: number;
  tradesKept: number;
  /** Newest fills kept per symbol (ingest.fills_kept). */
  fillsKept?: number;
  /** Newest alerts kept (ingest.alerts_kept). */
  alertsKept?: number;
  /** How long an order in a terminal state stays visible, in ms. */
  terminalOrderRetention: number;
  /** Largest payload accepted, in bytes. */
  maxMessageSize: number;
  /** Most distinct symbols in market_data, orderbook and trades: a publisher flooding names is refused past it. */
  maxSymbols?: number;
  /** A symbol with no update for this long, in ms, is forgotten (its market_data, orderbook and trades go). */
  symbolIdleTtl?: number;
  /** Largest stored record (a trade, an order, a trimmed book…), by its estimated JSON size in bytes. */
  maxRecordSize?: number;
  /** Most entries of each of orders, positions and strategies. */
  maxEntries?: number;
  /** Most bytes the whole state may hold (the sum of its records' estimated sizes). */
  maxStateSize?: number;
  now?: () => number;
}

function isIngestTopic(topic: string): topic is IngestTopic {
  return (INGEST_TOPICS as readonly string[]).includes(topic);
}

/**
 * Turns backend payloads into state changes: validation and normalization (schemas.ts, normalize.ts,
 * orderbook.ts), the per-topic rules, and the state's limits. Every payload is counted by source (counters.ts).
 */
export class Ingest {
  readonly counters: IngestCounters = newCounters();
  private readonly state: StateStore;
  private readonly options: IngestOptions;
  private readonly now: () => number;
  private readonly maxRecordSize: number;
  private readonly maxEntries: number;
  private readonly maxStateSize: number;
  private readonly prepareOptions: PrepareOptions;
  /** Terminal orders within ingest.terminal_order_retention. */
  private readonly terminalOrders: TerminalOrders;
  /** When each entity was last written (local clock), for the rule of replaceSection. */
  private readonly writtenAt = new Map<string, number>();
  /** Symbols of market_data, orderbook and trades (ingest.max_symbols, ingest.symbol_idle_ttl). */
  private readonly symbols: SymbolTable;
  /** The newest trades of each symbol (ingest.trades_kept). */
  private readonly trades: TradeLists;
  /** The newest fills of each symbol (ingest.fills_kept). */
  private readonly fills: TradeLists;
  /** The newest alerts (ingest.alerts_kept). */
  private readonly alerts: AlertBook;

  constructor(state: StateStore, options: IngestOptions) {
    this.state = state;
    this.options = options;
    this.now = options.now ?? Date.now;
    this.maxRecordSize = options.maxRecordSize ?? UNBOUNDED;
    this.maxEntries = options.maxEntries ?? Number.POSITIVE_INFINITY;
    this.maxStateSize = options.maxStateSize ?? UNBOUNDED;
    this.prepareOptions = { orderbookDepth: options.orderbookDepth, maxRecordSize: this.maxRecordSize };
    this.trades = new TradeLists(options.tradesKept);
    this.fills = new TradeLists(options.fillsKept ?? 100, 'fill_id');
    this.alerts = new AlertBook(options.alertsKept ?? 100);
    this.terminalOrders = new TerminalOrders(options.terminalOrderRetention, this.now);
    this.symbols = new SymbolTable({
      max: options.maxSymbols,
      idleTtl: options.symbolIdleTtl,
      now: this.now,
      forget: (symbol) => {
        // Clients see the deletion of its market_data, orderbook and trades.
        for (const topic of SYMBOL_SCOPED_TOPICS) this.write(topic, symbol, undefined);
        this.counters.symbolsEvicted++;
      },
    });
  }

  /** How full the state's budget (ingest.max_state_size) is, from 0 to 1; 0 without a budget. */
  get budgetUsed(): number {
    return Number.isFinite(this.maxStateSize) ? this.state.bytes / this.maxStateSize : 0;
  }

  /**
   * Validates and applies one message from a channel like `orderbook:BTCUSDT`, counted under `source`.
   * Throws PayloadError (and counts it) for anything invalid; nothing is applied then.
   */
  handleMessage(channel: string, payload: Buffer | string, source: MessageSource = 'redis'): void {
    const colon = channel.indexOf(':');
    const topic = colon === -1 ? channel : channel.slice(0, colon);
    const label = isIngestTopic(topic) ? topic : 'unknown';
    try {
      if (!isIngestTopic(topic)) throw new PayloadError(label, `channel ${channel} is not an ingest topic`);
      const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
      if (size > this.options.maxMessageSize) {
        throw new PayloadError(topic, `payload of ${size} bytes exceeds ${this.options.maxMessageSize}`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
      } catch {
        throw new PayloadError(topic, 'payload is not JSON');
      }
      const applied = this.applyPayload(topic, parsed, colon === -1 ? undefined : channel.slice(colon + 1));
      if (!applied) countAccepted(this.counters, source, topic, 1, 'stale');
    } catch (error) {
      countFailed(this.counters, error, source, label);
      throw error;
    }
    countAccepted(this.counters, source, topic, 1);
  }

  /**
   * Validates and applies one parsed payload, not counted as a message (a refusal by a limit is).
   * `channelSuffix` supplies the symbol where the payload has none.
   */
  apply(topic: IngestTopic, payload: unknown, channelSuffix?: string): void {
    try {
      this.applyPayload(topic, payload, channelSuffix);
    } catch (error) {
      countFailed(this.counters, error);
      throw error;
    }
  }

  /**
   * Replaces a keyed section with a backend's full list (a poll that began at `pollStartedAt`; see planSection).
   * `complete: false` (a truncated list) removes nothing. All or nothing: every record is validated and
   * normalized, and the result checked against ingest.max_entries and ingest.max_state_size, before anything is
   * written; an invalid record or a limit throws PayloadError. Counted as poll records.
   */
  replaceSection(topic: PolledSection, records: JsonObject[], pollStartedAt: number, complete = true): void {
    try {
      const plan = this.planPolled(topic, records, pollStartedAt, complete);
      checkSection(this.state, topic, plan, this.maxEntries, this.maxStateSize);
      for (const key of plan.removals) this.write(topic, key, undefined);
      for (const entry of plan.writes) this.applyPrepared(topic, entry);
      countAccepted(this.counters, 'poll', topic, plan.stale, 'stale');
    } catch (error) {
      countFailed(this.counters, error, 'poll', topic);
      throw error;
    }
    countAccepted(this.counters, 'poll', topic, records.length);
  }

  /** Stores a single-object section (`account`, `risk`) from a poll, unless the state holds a newer one. */
  replaceSingle(topic: 'account' | 'risk', record: JsonObject): void {
    try {
      if (isNewer(this.state.get(topic), record)) countAccepted(this.counters, 'poll', topic, 1, 'stale');
      else if (topic === 'account') this.applyPayload('account', record);
      else {
        const size = new RecordSize('risk', this.maxRecordSize);
        this.write('risk', SINGLE, withoutNulls(record, size), size.bytes);
      }
    } catch (error) {
      countFailed(this.counters, error, 'poll', topic);
      throw error;
    }
    countAccepted(this.counters, 'poll', topic, 1);
  }

  /**
   * Positions and the account from one account-monitor poll: both or neither. Every record is checked, and the
   * two writes together against the limits, before either is written. The account is kept if the state holds a
   * newer one (as replaceSingle). Counted as poll records.
   */
  replaceAccount(account: JsonObject, positions: JsonObject[], pollStartedAt: number): void {
    let label = 'account';
    try {
      const newAccount = isNewer(this.state.get('account'), account)
        ? undefined
        : preparePayload(this.prepareOptions, 'account', account);
      label = 'positions';
      const plan = this.planPolled('positions', positions, pollStartedAt, true);
      const accountGrowth = newAccount ? newAccount.size - this.state.sizeOf('account', SINGLE) : 0;
      checkSection(this.state, 'positions', plan, this.maxEntries, this.maxStateSize - accountGrowth);
      for (const key of plan.removals) this.write('positions', key, undefined);
      for (const entry of plan.writes) this.applyPrepared('positions', entry);
      if (newAccount) this.applyPrepared('account', newAccount);
      countAccepted(this.counters, 'poll', 'positions', plan.stale, 'stale');
      if (!newAccount) countAccepted(this.counters, 'poll', 'account', 1, 'stale');
    } catch (error) {
      countFailed(this.counters, error, 'poll', label);
      throw error;
    }
    countAccepted(this.counters, 'poll', 'positions', positions.length);
    countAccepted(this.counters, 'poll', 'account', 1);
  }

  /** Removes terminal orders whose retention has passed. Returns how many were removed. */
  sweepTerminalOrders(): number {
    const expired = this.terminalOrders.takeExpired();
    for (const orderId of expired) this.write('orders', orderId, undefined);
    return expired.length;
  }

  /**
   * Forgets symbols with no update for ingest.symbol_idle_ttl, least recently written first: their market_data,
   * orderbook and trades are removed (clients see the deletion). Returns how many were forgotten.
   */
  sweepIdleSymbols(): number {
    return this.symbols.sweep();
  }

  /** Both sweeps: expired terminal orders and idle symbols. */
  sweep(): void {
    this.sweepTerminalOrders();
    this.sweepIdleSymbols();
  }

  /** Checks and normalizes every polled record, then plans the section's writes and removals (no writes). */
  private planPolled(topic: PolledSection, records: JsonObject[], pollStartedAt: number, complete: boolean) {
    const prepared = records.map((record) => preparePayload(this.prepareOptions, topic, record));
    return planSection(this.state, topic, prepared, {
      pollStartedAt,
      complete,
      writtenAt: (key) => this.writtenAt.get(`${topic}\0${key}`),
      retained: (key) => topic === 'orders' && this.terminalOrders.has(key),
    });
  }

  /** Returns false when the payload was valid but not written: the state holds a later version. */
  private applyPayload(topic: IngestTopic, payload: unknown, channelSuffix?: string): boolean {
    return this.applyPrepared(topic, preparePayload(this.prepareOptions, topic, payload), channelSuffix);
  }

  /** Returns false when the record was not written: the state holds a later version (an older order update). */
  private applyPrepared(topic: IngestTopic, { record, size }: Prepared, channelSuffix?: string): boolean {
    switch (topic) {
      case 'market_data':
      case 'orderbook': {
        const symbol = this.symbolOf(record, channelSuffix, topic);
        this.write(topic, symbol, { ...record, symbol }, withSymbolSize(record, size, symbol));
        return true;
      }
      case 'trades':
      case 'fills':
        this.applyListed(topic, record, size, channelSuffix);
        return true;
      case 'orders':
        return this.applyOrder(record, size);
      case 'positions': {
        const symbol = String(record.symbol).toUpperCase();
        if (record.quantity === 0) this.write('positions', symbol, undefined);
        else this.write('positions', symbol, { ...record, symbol }, size);
        return true;
      }
      case 'account':
        this.write('account', SINGLE, record, size);
        return true;
      case 'strategies': {
        const id = String(record.id);
        this.write('strategies', id, { ...record, id }, size);
        return true;
      }
      case 'alerts':
        return this.applyAlert(record, size);
      case 'risk':
        return this.applyRiskMetrics(record);
    }
  }

  /** The one place ingest changes the state, within its limits (checkWrite). */
  private write(topic: Topic, key: string, value: Json | undefined, size = 0): void {
    if (value !== undefined) checkWrite(this.state, topic, key, size, this.maxEntries, this.maxStateSize);
    this.state.set(topic, key, value, size);
    const id = `${topic}\0${key}`;
    const now = this.now();
    if (value === undefined) this.writtenAt.delete(id);
    else {
      this.writtenAt.set(id, now);
      if (SYMBOL_SCOPED_TOPICS.has(topic)) this.symbols.written(key, now);
    }
  }

  /** The upper-cased symbol of a record (or of its channel), with a place under ingest.max_symbols. */
  private symbolOf(record: JsonObject, channelSuffix: string | undefined, topic: IngestTopic): string {
    const symbol = (record.symbol as string | undefined) ?? channelSuffix;
    if (!symbol || !SYMBOL_PATTERN.test(symbol)) {
      throw new PayloadError(topic, `${topic} payload has no symbol and its channel names none`);
    }
    const upper = symbol.toUpperCase();
    if (!this.symbols.admits(upper)) {
      const max = this.options.maxSymbols ?? Number.POSITIVE_INFINITY;
      throw new PayloadError(
        topic,
        `symbol ${upper} refused: ingest.max_symbols (${max}) reached`,
        'max_symbols',
      );
    }
    return upper;
  }

  /** A trade or a fill into its symbol's list of the newest (ingest.trades_kept, ingest.fills_kept). */
  private applyListed(
    topic: 'trades' | 'fills',
    record: JsonObject,
    size: number,
    channelSuffix?: string,
  ): void {
    const symbol = this.symbolOf(record, channelSuffix, topic);
    const previous = (this.state.get(topic, symbol) as JsonObject[] | undefined) ?? [];
    const item = { ...record, symbol };
    const itemSize = withSymbolSize(record, size, symbol);
    const lists = topic === 'trades' ? this.trades : this.fills;
    const inserted = lists.insert(previous, this.state.sizeOf(topic, symbol), item, itemSize);
    if (inserted) this.write(topic, symbol, inserted.list, inserted.size);
  }

  private applyOrder(record: JsonObject, size: number): boolean {
    const orderId = String(record.order_id);
    const state = String(record.state).toUpperCase();
    const order = { ...record, order_id: orderId, symbol: String(record.symbol).toUpperCase(), state };
    if (isStaleOrder(this.state.get('orders', orderId), order)) return false;
    this.write('orders', orderId, order, size);
    this.terminalOrders.update(orderId, state);
    return true;
  }

  /**
   * An alert among the newest ingest.alerts_kept (the oldest goes when full; one older than every kept alert is not
   * written). An emergency stop also sets `risk.emergency_stop`, as the poller would: both or neither.
   */
  private applyAlert(alert: JsonObject, size: number): boolean {
    const id = String(alert.id);
    const timestamp = alert.timestamp as number;
    if (this.alerts.has(id) || !this.alerts.admits(timestamp)) return false;
    const risk = isEmergencyStop(alert)
      ? riskWithStop(this.state.get('risk'), alert, this.maxRecordSize)
      : undefined;
    if (risk) {
      // Checked together before either is written: the alert must not land without the stop, nor the stop alone.
      checkWrite(this.state, 'risk', SINGLE, risk.size, this.maxEntries, this.maxStateSize - size);
    }
    this.write('alerts', id, alert, size);
    for (const evicted of this.alerts.add(id, timestamp)) this.write('alerts', evicted, undefined);
    if (risk) this.write('risk', SINGLE, risk.record, risk.size);
    return true;
  }

  /** The risk manager's metrics between polls (risk.ts); not written when the state holds later ones. */
  private applyRiskMetrics(metrics: JsonObject): boolean {
    const risk = riskWithMetrics(this.state.get('risk'), metrics, this.maxRecordSize);
    if (risk) this.write('risk', SINGLE, risk.record, risk.size);
    return risk !== undefined;
  }
}
