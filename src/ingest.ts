import { type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { toMillis } from './backends.ts';
import type { Json, JsonObject } from './merge-patch.ts';
import { SINGLE, type StateStore } from './state.ts';
import { INGEST_TOPICS, type IngestTopic, SYMBOL_SCOPED_TOPICS, type Topic } from './topics.ts';

const NUMERIC_STRING = '^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$';
const DECIMAL = new RegExp(NUMERIC_STRING);
/** Some backends send decimals as strings: both are accepted, numbers are stored. */
const Num = Type.Union([Type.Number(), Type.String({ pattern: NUMERIC_STRING })]);
const OptNum = Type.Optional(Type.Union([Num, Type.Null()]));
const OptStr = Type.Optional(Type.Union([Type.String(), Type.Null()]));
const OptTime = Type.Optional(Type.Union([Type.Number(), Type.String(), Type.Null()]));
const Id = Type.Union([Type.String({ minLength: 1, maxLength: 128 }), Type.Integer()]);
const SymbolName = Type.String({ pattern: '^[A-Za-z0-9._-]{1,32}$' });

/** Payload schemas as the real publishers send them; fields beyond these are kept. */
export const PayloadSchemas = {
  market_data: Type.Object({
    symbol: Type.Optional(SymbolName),
    last_price: Num,
    bid_price: OptNum,
    ask_price: OptNum,
    volume_24h: OptNum,
    high_24h: OptNum,
    low_24h: OptNum,
    updated_at: OptTime,
  }),
  orderbook: Type.Object({
    symbol: Type.Optional(SymbolName),
    bids: Type.Record(Type.String(), Num),
    asks: Type.Record(Type.String(), Num),
    last_update_id: OptNum,
    timestamp: OptNum,
    initialized: Type.Optional(Type.Boolean()),
  }),
  trades: Type.Object({
    symbol: Type.Optional(SymbolName),
    trade_id: Id,
    price: Num,
    quantity: Num,
    timestamp: Num,
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
    quantity: Num,
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
    balances: Type.Optional(Type.Record(Type.String(), Num)),
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
} satisfies Record<IngestTopic, TSchema>;

const OrderEnvelope = Type.Object({ order: Type.Object({}), update_type: OptStr });

const checkers = Object.fromEntries(
  Object.entries(PayloadSchemas).map(([topic, schema]) => [topic, TypeCompiler.Compile(schema)]),
) as { [T in IngestTopic]: ReturnType<typeof TypeCompiler.Compile<(typeof PayloadSchemas)[T]>> };
const envelopeChecker = TypeCompiler.Compile(OrderEnvelope);

/**
 * The orderbook payload with each side checked only for being an object: its levels are checked in the one pass
 * that picks the best ones (scanBookSide), not walked by typebox first. A full book has thousands of levels.
 */
const orderbookShapeChecker = TypeCompiler.Compile(
  Type.Object({ ...PayloadSchemas.orderbook.properties, bids: Type.Object({}), asks: Type.Object({}) }),
);

/**
 * Keys whose values typebox's `Type.Record(Type.String(), …)` checks (`.` stops at a line break). A level under
 * any other key is not refused by the schema but by its price, which cannot be a number.
 */
const RECORD_KEY = /^(.*)$/;

/** The fields of each payload that are numbers, whatever the JSON carried. */
const NUMERIC_FIELDS: Record<IngestTopic, readonly string[]> = {
  market_data: ['last_price', 'bid_price', 'ask_price', 'volume_24h', 'high_24h', 'low_24h'],
  orderbook: ['last_update_id', 'timestamp'],
  trades: ['price', 'quantity', 'timestamp'],
  orders: ['quantity', 'price', 'stop_price', 'filled_quantity', 'average_price', 'fee'],
  positions: ['quantity', 'entry_price', 'mark_price', 'unrealized_pnl', 'realized_pnl', 'liquidation_price'],
  account: ['total_balance', 'available_balance', 'margin_used', 'unrealized_pnl'],
  strategies: ['pnl', 'trades', 'win_rate'],
};

export const TERMINAL_ORDER_STATES = new Set(['FILLED', 'CANCELED', 'CANCELLED', 'REJECTED', 'EXPIRED']);

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

export interface IngestOptions {
  orderbookDepth: number;
  tradesKept: number;
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

export interface IngestCounters {
  messages: Record<string, number>;
  invalid: Record<string, number>;
  /** Valid payloads refused by a limit, by limit and topic (also counted in `invalid`). */
  refused: Record<Limit, Record<string, number>>;
  /** Symbols forgotten after ingest.symbol_idle_ttl without an update. */
  symbolsEvicted: number;
}

function isIngestTopic(topic: string): topic is IngestTopic {
  return (INGEST_TOPICS as readonly string[]).includes(topic);
}

function toNumber(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

/** Keys that would reach an object's prototype when assigned: refused wherever they appear in a payload. */
const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Deeper objects or arrays than this in a payload are refused (no backend nests that far; a hostile one could). */
const MAX_DEPTH = 32;

function unsafeKeyError(topic: string, key: string): PayloadError {
  return new PayloadError(topic, `invalid ${topic} payload: key ${JSON.stringify(key)} is not allowed`);
}

/**
 * The size a copy has reached, checked against ingest.max_record_size as it grows, so that a copy stops as soon as
 * its record is too large: the work on a refused payload is bounded by the limit, not by the payload.
 *
 * The size estimates the record's JSON text: a string by its length plus quotes, a number as 8 bytes, `true`,
 * `false` and `null` as 5, 5 and 4, and one byte per separator. It is what the state's budget adds up.
 */
class RecordSize {
  bytes = 0;
  readonly topic: string;
  readonly max: number;
  constructor(topic: string, max: number) {
    this.topic = topic;
    this.max = max;
  }

  add(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.max) {
      throw new PayloadError(
        this.topic,
        `${this.topic} record of more than ${this.max} bytes refused: ingest.max_record_size`,
        'max_record_size',
      );
    }
  }
}

/** A size nothing reaches: for copies whose size is not checked (a nested level of a book being refused). */
const UNBOUNDED = Number.POSITIVE_INFINITY;
/** The estimated size of one kept book level, `[price,quantity],`. */
const LEVEL_SIZE = 20;

function scalarSize(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2;
    case 'number':
      return 8;
    case 'boolean':
      return 5;
    default:
      return 4;
  }
}

/** The error for a payload its topic's schema refuses: the schema's first complaint. */
function schemaError(topic: IngestTopic, payload: unknown): PayloadError {
  const error = checkers[topic].Errors(payload).First();
  const where = error?.path ? `${error.path}: ` : '';
  return new PayloadError(topic, `invalid ${topic} payload: ${where}${error?.message ?? 'wrong shape'}`);
}

function depthError(topic: string): PayloadError {
  return new PayloadError(topic, `invalid ${topic} payload: nested deeper than ${MAX_DEPTH}`);
}

/**
 * Copies an object, dropping null fields at every depth of objects (a merge patch cannot carry a null value), and
 * refusing what no client could be sent: unsafe keys, objects or arrays nested deeper than MAX_DEPTH, numbers that
 * are not finite (JSON.parse turns 1e400 into Infinity, which JSON sends as null), and a record over its size.
 */
function withoutNulls(value: Record<string, unknown>, size: RecordSize, depth = 0): JsonObject {
  if (depth > MAX_DEPTH) throw depthError(size.topic);
  size.add(2);
  const result: JsonObject = {};
  for (const [key, field] of Object.entries(value)) copyWithoutNulls(result, key, field, size, depth);
  return result;
}

/** Copies one field of an object at `depth` into `result` the way withoutNulls does. */
function copyWithoutNulls(
  result: JsonObject,
  key: string,
  field: unknown,
  size: RecordSize,
  depth: number,
): void {
  if (UNSAFE_KEYS.has(key)) throw unsafeKeyError(size.topic, key);
  if (field === null) return;
  size.add(key.length + 4);
  result[key] = copyValue(field, size, depth + 1, key);
}

/** A copy of one value found at `depth` (named `name` for an error), checked like withoutNulls checks objects. */
function copyValue(value: unknown, size: RecordSize, depth: number, name: string): Json {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new PayloadError(size.topic, `invalid ${size.topic} payload: ${name} is not a finite number`);
    }
    size.add(scalarSize(value));
    return value as Json;
  }
  if (!Array.isArray(value)) return withoutNulls(value as Record<string, unknown>, size, depth);
  if (depth > MAX_DEPTH) throw depthError(size.topic);
  size.add(2);
  // Nulls stay in arrays: a merge patch replaces an array whole.
  const copy: Json[] = new Array(value.length);
  for (let index = 0; index < value.length; index++) {
    size.add(1);
    copy[index] = copyValue(value[index], size, depth + 1, name);
  }
  return copy;
}

/** Turns the numeric fields of a copied payload into numbers, in place. */
function numbersAsNumbers(record: JsonObject, numericFields: readonly string[], topic: string): void {
  for (const field of numericFields) {
    if (record[field] === undefined) continue;
    const value = toNumber(record[field]);
    // "1e400" and 1e400 are Infinity, which JSON turns into null: a deletion for a client.
    if (!Number.isFinite(value))
      throw new PayloadError(topic, `invalid ${topic} payload: ${field} is not a finite number`);
    record[field] = value;
  }
}

/** Copies a payload without null fields and with numbers as numbers. */
function normalize(
  payload: Record<string, unknown>,
  numericFields: readonly string[],
  size: RecordSize,
): JsonObject {
  const result = withoutNulls(payload, size);
  numbersAsNumbers(result, numericFields, size.topic);
  return result;
}

/** A payload that passed every check, ready to be written, with its estimated size. */
interface Prepared {
  record: JsonObject;
  size: number;
}

/** The keyed topics whose entries are capped by ingest.max_entries. */
const ENTRY_CAPPED = new Set<Topic>(['orders', 'positions', 'strategies']);

/**
 * Turns backend payloads into state changes: validation, normalization and the per-topic rules (book depth,
 * trades kept, terminal order retention), within the state's limits (record size, entries per topic, symbols,
 * the total budget). Knows nothing of Redis, so the backend poller can use it too.
 */
export class Ingest {
  readonly counters: IngestCounters = {
    messages: {},
    invalid: {},
    refused: { max_record_size: {}, max_entries: {}, max_symbols: {}, max_state_size: {} },
    symbolsEvicted: 0,
  };
  private readonly state: StateStore;
  private readonly options: IngestOptions;
  private readonly now: () => number;
  private readonly maxRecordSize: number;
  private readonly maxStateSize: number;
  /** Terminal orders by id, with the time they may be removed at; insertion order is expiry order. */
  private readonly terminalOrders = new Map<string, number>();
  /** When each entity was last written (local clock), for the rule of replaceSection. */
  private readonly writtenAt = new Map<string, number>();
  /** Symbols of market_data, orderbook and trades, with when each was last written; least recent first. */
  private readonly symbols = new Map<string, number>();
  /** The estimated size of each stored trade, so a trade list's size is the sum of its trades'. */
  private readonly tradeSizes = new WeakMap<JsonObject, number>();

  constructor(state: StateStore, options: IngestOptions) {
    this.state = state;
    this.options = options;
    this.now = options.now ?? Date.now;
    this.maxRecordSize = options.maxRecordSize ?? UNBOUNDED;
    this.maxStateSize = options.maxStateSize ?? UNBOUNDED;
  }

  /** How full the state's budget (ingest.max_state_size) is, from 0 to 1; 0 without a budget. */
  get budgetUsed(): number {
    return Number.isFinite(this.maxStateSize) ? this.state.bytes / this.maxStateSize : 0;
  }

  /**
   * Validates and applies one message from a channel like `orderbook:BTCUSDT`.
   * Throws PayloadError (and counts it) for anything invalid; nothing is applied then.
   */
  handleMessage(channel: string, payload: Buffer | string): void {
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
      this.apply(topic, parsed, colon === -1 ? undefined : channel.slice(colon + 1));
    } catch (error) {
      this.counters.invalid[label] = (this.counters.invalid[label] ?? 0) + 1;
      throw error;
    }
    this.counters.messages[topic] = (this.counters.messages[topic] ?? 0) + 1;
  }

  /** Validates and applies one parsed payload. `channelSuffix` supplies the symbol where the payload has none. */
  apply(topic: IngestTopic, payload: unknown, channelSuffix?: string): void {
    // A book is mostly levels, of which only the best few are kept: it is checked and reduced in one pass.
    if (topic === 'orderbook') {
      this.applyOrderbook(payload, channelSuffix);
      return;
    }
    this.applyPrepared(topic, this.prepare(topic, payload), channelSuffix);
  }

  /** Checks and normalizes one payload of any topic but orderbook; throws PayloadError, changes nothing. */
  private prepare(topic: Exclude<IngestTopic, 'orderbook'>, payload: unknown): Prepared {
    if (topic === 'orders' && envelopeChecker.Check(payload)) payload = payload.order;
    if (!checkers[topic].Check(payload)) throw schemaError(topic, payload);
    const size = new RecordSize(topic, this.maxRecordSize);
    try {
      const record = normalize(payload as Record<string, unknown>, NUMERIC_FIELDS[topic], size);
      if (topic === 'account') normalizeBalances(record);
      return { record, size: size.bytes };
    } catch (error) {
      if (error instanceof PayloadError && error.limit) this.countRefused(error);
      throw error;
    }
  }

  private applyPrepared(
    topic: Exclude<IngestTopic, 'orderbook'>,
    { record, size }: Prepared,
    channelSuffix?: string,
  ): void {
    switch (topic) {
      case 'market_data':
        this.applyMarketData(record, size, channelSuffix);
        return;
      case 'trades':
        this.applyTrade(record, size, channelSuffix);
        return;
      case 'orders':
        this.applyOrder(record, size);
        return;
      case 'positions':
        this.applyPosition(record, size);
        return;
      case 'account':
        this.applyAccount(record, size);
        return;
      case 'strategies':
        this.applyStrategy(record, size);
        return;
    }
  }

  /**
   * Replaces a keyed section with a backend's full list (a poll that began at `pollStartedAt`):
   * - a returned record is applied unless the state holds a newer one (by `updated_at`), e.g. from Redis;
   * - an entity the list no longer has is removed, unless it was written after the poll began (a newer
   *   update) or is a terminal order still within its retention. `complete: false` (a truncated list)
   *   removes nothing.
   * All or nothing: every record is validated and normalized, and the result checked against ingest.max_entries
   * and ingest.max_state_size, before anything is written; an invalid record or a limit throws PayloadError.
   */
  replaceSection(
    topic: 'orders' | 'positions' | 'strategies',
    records: JsonObject[],
    pollStartedAt: number,
    complete = true,
  ): void {
    const prepared = records.map((record) => this.prepare(topic, record));
    const keyOf = ({ record }: Prepared) =>
      topic === 'orders'
        ? String(record.order_id)
        : topic === 'positions'
          ? String(record.symbol).toUpperCase()
          : String(record.id);
    const returned = new Set(prepared.map(keyOf));
    const writes = prepared.filter(
      (entry) => !this.isNewer(this.state.get(topic, keyOf(entry)), entry.record),
    );
    const removals: string[] = [];
    if (complete) {
      for (const key of this.state.keys(topic)) {
        if (returned.has(key)) continue;
        if ((this.writtenAt.get(`${topic}\0${key}`) ?? 0) > pollStartedAt) continue;
        if (topic === 'orders' && this.terminalOrders.has(key)) continue;
        removals.push(key);
      }
    }
    this.checkSection(topic, writes, removals, keyOf);
    for (const key of removals) this.write(topic, key, undefined);
    for (const entry of writes) this.applyPrepared(topic, entry);
  }

  /** Throws if writing `writes` and removing `removals` would take a section or the state past its limits. */
  private checkSection(
    topic: 'orders' | 'positions' | 'strategies',
    writes: Prepared[],
    removals: string[],
    keyOf: (entry: Prepared) => string,
  ): void {
    // Removed keys are never among the written ones (those were returned by the poll).
    let count = this.state.count(topic) - removals.length;
    let bytes = this.state.bytes;
    for (const key of removals) bytes -= this.state.sizeOf(topic, key);
    const written = new Map<string, number>();
    for (const entry of writes) written.set(keyOf(entry), entry.size);
    for (const [key, size] of written) {
      if (this.state.get(topic, key) === undefined) count++;
      bytes += size - this.state.sizeOf(topic, key);
    }
    const maxEntries = this.options.maxEntries ?? Number.POSITIVE_INFINITY;
    if (count > maxEntries && count > this.state.count(topic)) {
      throw this.refused(
        topic,
        `${topic} list of ${count} entries refused: ingest.max_entries (${maxEntries}) reached`,
        'max_entries',
      );
    }
    if (bytes > this.maxStateSize && bytes > this.state.bytes) {
      throw this.refused(
        topic,
        `${topic} list refused: ingest.max_state_size (${this.maxStateSize} bytes) would be exceeded`,
        'max_state_size',
      );
    }
  }

  /** Stores a single-object section (`account`, `risk`) from a backend, unless the state holds a newer one. */
  replaceSingle(topic: 'account' | 'risk', record: JsonObject): void {
    if (this.isNewer(this.state.get(topic), record)) return;
    if (topic === 'account') {
      this.apply('account', record);
      return;
    }
    const size = new RecordSize('risk', this.maxRecordSize);
    let copy: JsonObject;
    try {
      copy = withoutNulls(record, size);
    } catch (error) {
      if (error instanceof PayloadError && error.limit) this.countRefused(error);
      throw error;
    }
    this.write('risk', SINGLE, copy, size.bytes);
  }

  /** Throws PayloadError if `record` would be refused as a `topic` payload; changes nothing. */
  validate(topic: 'account' | 'positions', record: unknown): void {
    this.prepare(topic, record);
  }

  /** Whether `current` carries a later `updated_at` than `incoming` (both must have one). */
  private isNewer(current: Json | undefined, incoming: JsonObject): boolean {
    if (current === undefined || current === null || typeof current !== 'object' || Array.isArray(current))
      return false;
    const currentTime = toMillis(current.updated_at);
    const incomingTime = toMillis(incoming.updated_at);
    return currentTime !== undefined && incomingTime !== undefined && currentTime > incomingTime;
  }

  /** Counts a limit's refusal (every source: Redis, polls) and returns the error to throw. */
  private refused(topic: string, message: string, limit: Limit): PayloadError {
    const error = new PayloadError(topic, message, limit);
    this.countRefused(error);
    return error;
  }

  private countRefused(error: PayloadError): void {
    const byTopic = this.counters.refused[error.limit!];
    byTopic[error.topic] = (byTopic[error.topic] ?? 0) + 1;
  }

  /**
   * The one place ingest changes the state. A new entry of orders, positions or strategies past ingest.max_entries,
   * and a write that would take the state past ingest.max_state_size, are refused (a write that does not grow the
   * state always goes through, so a full state can still be updated and emptied).
   */
  private write(topic: Topic, key: string, value: Json | undefined, size = 0): void {
    if (value !== undefined) {
      if (UNSAFE_KEYS.has(key)) {
        throw new PayloadError(topic, `invalid ${topic} payload: id ${JSON.stringify(key)} is not allowed`);
      }
      const exists = this.state.get(topic, key) !== undefined;
      const maxEntries = this.options.maxEntries ?? Number.POSITIVE_INFINITY;
      if (!exists && ENTRY_CAPPED.has(topic) && this.state.count(topic) >= maxEntries) {
        throw this.refused(
          topic,
          `${topic} ${key} refused: ingest.max_entries (${maxEntries}) reached`,
          'max_entries',
        );
      }
      const growth = size - this.state.sizeOf(topic, key);
      if (growth > 0 && this.state.bytes + growth > this.maxStateSize) {
        throw this.refused(
          topic,
          `${topic} ${key} refused: ingest.max_state_size (${this.maxStateSize} bytes) is full`,
          'max_state_size',
        );
      }
    }
    this.state.set(topic, key, value, size);
    const id = `${topic}\0${key}`;
    const now = this.now();
    if (value === undefined) this.writtenAt.delete(id);
    else {
      this.writtenAt.set(id, now);
      if (SYMBOL_SCOPED_TOPICS.has(topic)) {
        // Most recently written last: the first entry is the one to evict.
        this.symbols.delete(key);
        this.symbols.set(key, now);
      }
    }
  }

  /** Removes terminal orders whose retention has passed. Returns how many were removed. */
  sweepTerminalOrders(): number {
    const now = this.now();
    let removed = 0;
    for (const [orderId, expiresAt] of this.terminalOrders) {
      if (expiresAt > now) break;
      this.terminalOrders.delete(orderId);
      this.write('orders', orderId, undefined);
      removed++;
    }
    return removed;
  }

  /**
   * Forgets symbols with no update for ingest.symbol_idle_ttl, least recently written first: their market_data,
   * orderbook and trades are removed (clients see the deletion). With `room`, stops once one symbol is freed.
   * Returns how many were forgotten.
   */
  sweepIdleSymbols(room = false): number {
    const ttl = this.options.symbolIdleTtl;
    if (ttl === undefined) return 0;
    const idleBefore = this.now() - ttl;
    let evicted = 0;
    for (const [symbol, writtenAt] of this.symbols) {
      if (writtenAt > idleBefore) break;
      this.symbols.delete(symbol);
      for (const topic of SYMBOL_SCOPED_TOPICS) this.write(topic, symbol, undefined);
      evicted++;
      if (room) break;
    }
    this.counters.symbolsEvicted += evicted;
    return evicted;
  }

  /** Both sweeps: expired terminal orders and idle symbols. */
  sweep(): void {
    this.sweepTerminalOrders();
    this.sweepIdleSymbols();
  }

  private symbolOf(record: JsonObject, channelSuffix: string | undefined, topic: IngestTopic): string {
    const symbol = (record.symbol as string | undefined) ?? channelSuffix;
    if (!symbol || !/^[A-Za-z0-9._-]{1,32}$/.test(symbol)) {
      throw new PayloadError(topic, `${topic} payload has no symbol and its channel names none`);
    }
    const upper = symbol.toUpperCase();
    const maxSymbols = this.options.maxSymbols ?? Number.POSITIVE_INFINITY;
    // The place is taken by the write (see write): a refused record takes none.
    if (!this.symbols.has(upper) && this.symbols.size >= maxSymbols && this.sweepIdleSymbols(true) === 0) {
      throw this.refused(
        topic,
        `symbol ${upper} refused: ingest.max_symbols (${maxSymbols}) reached`,
        'max_symbols',
      );
    }
    return upper;
  }

  private applyMarketData(record: JsonObject, size: number, channelSuffix?: string): void {
    const symbol = this.symbolOf(record, channelSuffix, 'market_data');
    this.write('market_data', symbol, { ...record, symbol }, withSymbolSize(record, size, symbol));
  }

  /**
   * Does what apply() does for any topic (schema check, normalize, symbol, then the best levels of each side),
   * but reads each side once: every level is validated and the best `orderbookDepth` kept in the same pass, and
   * the full sides are never copied. A payload with several faults is refused for the one the generic path
   * would have met first, with the same message.
   */
  private applyOrderbook(payload: unknown, channelSuffix?: string): void {
    if (!orderbookShapeChecker.Check(payload) || !isBookSide(payload.bids) || !isBookSide(payload.asks))
      throw schemaError('orderbook', payload);
    const depth = this.options.orderbookDepth;
    const sides = {
      bids: scanBookSide(payload.bids as Record<string, unknown>, depth, true),
      asks: scanBookSide(payload.asks as Record<string, unknown>, depth, false),
    };
    for (const name of ['bids', 'asks'] as const) {
      const at = sides[name].badQuantityAt;
      if (at === undefined) continue;
      // The schema names most bad quantities; a decimal string too large for a number ("1e400") it lets through.
      if (!checkers.orderbook.Check(payload)) throw schemaError('orderbook', payload);
      throw new PayloadError(
        'orderbook',
        `invalid orderbook payload: /${name}/${at}: quantity is not a finite number`,
      );
    }
    // normalize(), with each side replaced by its best levels at its place in the payload.
    const size = new RecordSize('orderbook', this.maxRecordSize);
    const record: JsonObject = {};
    try {
      size.add(2);
      for (const [key, field] of Object.entries(payload)) {
        if (key === 'bids' || key === 'asks') {
          const { copyError, levels } = sides[key];
          if (copyError !== undefined) throw copyError;
          size.add(key.length + 6 + levels.length * LEVEL_SIZE);
          record[key] = levels;
        } else copyWithoutNulls(record, key, field, size, 0);
      }
    } catch (error) {
      if (error instanceof PayloadError && error.limit) this.countRefused(error);
      throw error;
    }
    numbersAsNumbers(record, NUMERIC_FIELDS.orderbook, 'orderbook');
    // Before the symbol is taken: a refused book must not use up a place under ingest.max_symbols.
    for (const side of [sides.bids, sides.asks])
      if (side.badPrice !== undefined) throw priceError(side.badPrice);
    const symbol = this.symbolOf(record, channelSuffix, 'orderbook');
    this.write('orderbook', symbol, { ...record, symbol }, withSymbolSize(record, size.bytes, symbol));
  }

  private applyTrade(record: JsonObject, size: number, channelSuffix?: string): void {
    const symbol = this.symbolOf(record, channelSuffix, 'trades');
    const trade: JsonObject = { ...record, symbol };
    const tradeId = String(trade.trade_id);
    const previous = (this.state.get('trades', symbol) as JsonObject[] | undefined) ?? [];
    // The list's size is kept up to date from its trades' sizes (each with its separator), not summed anew.
    let listSize = previous.length === 0 ? 2 : this.state.sizeOf('trades', symbol);
    const kept: JsonObject[] = [];
    for (const old of previous) {
      if (String(old.trade_id) === tradeId) listSize -= this.tradeSizes.get(old) ?? 0;
      else kept.push(old);
    }
    // Newest first, by trade time; a late trade lands in its place rather than on top.
    let index = 0;
    while (index < kept.length && (kept[index].timestamp as number) > (trade.timestamp as number)) index++;
    // A trade older than every kept one, on a full list, changes nothing.
    if (index >= this.options.tradesKept) return;
    const tradeSize = withSymbolSize(record, size, symbol) + 1;
    this.tradeSizes.set(trade, tradeSize);
    kept.splice(index, 0, trade);
    listSize += tradeSize;
    for (let dropped = this.options.tradesKept; dropped < kept.length; dropped++)
      listSize -= this.tradeSizes.get(kept[dropped]) ?? 0;
    if (kept.length > this.options.tradesKept) kept.length = this.options.tradesKept;
    this.write('trades', symbol, kept, listSize);
  }

  private applyOrder(record: JsonObject, size: number): void {
    const orderId = String(record.order_id);
    const state = String(record.state).toUpperCase();
    const order = { ...record, order_id: orderId, symbol: String(record.symbol).toUpperCase(), state };
    this.write('orders', orderId, order, size);
    this.terminalOrders.delete(orderId);
    if (TERMINAL_ORDER_STATES.has(state)) {
      this.terminalOrders.set(orderId, this.now() + this.options.terminalOrderRetention);
    }
  }

  private applyPosition(record: JsonObject, size: number): void {
    const symbol = String(record.symbol).toUpperCase();
    if (record.quantity === 0) this.write('positions', symbol, undefined);
    else this.write('positions', symbol, { ...record, symbol }, size);
  }

  private applyAccount(record: JsonObject, size: number): void {
    // The account monitor cannot always total the balances in USD; it always has balances.
    if (record.total_balance === undefined && record.balances === undefined) {
      throw new PayloadError('account', 'invalid account payload: neither total_balance nor balances');
    }
    this.write('account', SINGLE, record, size);
  }

  private applyStrategy(record: JsonObject, size: number): void {
    const id = String(record.id);
    this.write('strategies', id, { ...record, id }, size);
  }
}

/** A record's size once its `symbol` is set to `symbol` (added when the payload had none). */
function withSymbolSize(record: JsonObject, size: number, symbol: string): number {
  return record.symbol === undefined ? size + symbol.length + 12 : size;
}

/** Balances as numbers; a decimal string too large for a number ("1e400") is refused, as on every field. */
function normalizeBalances(record: JsonObject): void {
  if (record.balances === undefined) return;
  const balances: JsonObject = {};
  for (const [asset, amount] of Object.entries(record.balances as JsonObject)) {
    const value = toNumber(amount);
    if (!Number.isFinite(value))
      throw new PayloadError('account', `invalid account payload: balances.${asset} is not a finite number`);
    balances[asset] = value;
  }
  record.balances = balances;
}

/**
 * typebox's Record check refuses a Date or a Uint8Array where `Type.Object({})` takes it. Neither comes out of
 * JSON.parse, but apply() takes any value.
 */
function isBookSide(side: unknown): boolean {
  return !(side instanceof Date) && !(side instanceof Uint8Array);
}

function priceError(priceText: string): PayloadError {
  return new PayloadError('orderbook', `orderbook price ${JSON.stringify(priceText)} is not a number`);
}

/** One side of a book after its single pass. Faults are reported, not thrown: see applyOrderbook. */
interface ScannedSide {
  /** The best levels, `[[price, quantity], …]`; incomplete if there is a fault. */
  levels: [number, number][];
  /** The first level whose quantity the schema's `Num` refuses; the pass stops there, the schema names it. */
  badQuantityAt?: string;
  /** What withoutNulls would have thrown copying this side: its first unsafe key (`__proto__`, …) or the like. */
  copyError?: PayloadError;
  /** The first key that is not a finite decimal number. */
  badPrice?: string;
}

/**
 * Validates every level of one side of a book and keeps the best `depth`: bids descending, asks ascending, empty
 * levels dropped; levels at the same price (`"100"` and `"100.0"`) stay in the order of the side's keys.
 */
function scanBookSide(side: Record<string, unknown>, depth: number, descending: boolean): ScannedSide {
  const scanned: ScannedSide = { levels: [] };
  // The best levels so far, best first, in two arrays: no pair allocated for a level that is not kept.
  const prices: number[] = [];
  const quantities: number[] = [];
  // Object.keys, like the schema and withoutNulls: own keys only, in the same order.
  const keys = Object.keys(side);
  for (let i = 0; i < keys.length; i++) {
    const priceText = keys[i];
    const value = side[priceText];
    // As the schema's `Num` (a finite number or a decimal string), and finite once a number.
    const quantity =
      typeof value === 'number'
        ? Number.isFinite(value)
          ? value
          : Number.NaN
        : typeof value === 'string' && DECIMAL.test(value) && Number.isFinite(Number(value))
          ? Number(value)
          : Number.NaN;
    if (Number.isNaN(quantity)) {
      if (RECORD_KEY.test(priceText)) {
        scanned.badQuantityAt = priceText;
        return scanned;
      }
      // The schema does not check a key with a line break: withoutNulls drops the level if null and copies it
      // otherwise (at depth 2: payload, side, level), then it is refused for its price.
      if (value === null) continue;
      if (typeof value === 'object' && !Array.isArray(value)) {
        try {
          withoutNulls(value as Record<string, unknown>, new RecordSize('orderbook', UNBOUNDED), 2);
        } catch (error) {
          scanned.copyError ??= error as PayloadError;
        }
      }
      scanned.badPrice ??= priceText;
      continue;
    }
    if (UNSAFE_KEYS.has(priceText)) {
      scanned.copyError ??= unsafeKeyError('orderbook', priceText);
      continue;
    }
    const price = Number(priceText);
    if (!DECIMAL.test(priceText) || !Number.isFinite(price)) {
      scanned.badPrice ??= priceText;
      continue;
    }
    if (!(quantity > 0)) continue;
    // Insertion into a short sorted list: cheaper than sorting a book of thousands of levels.
    // A level no better than the worst kept one, on a full list, changes nothing; a better one takes its place.
    const full = prices.length >= depth;
    const worst = prices[prices.length - 1];
    if (full && !(descending ? price > worst : price < worst)) continue;
    let index = full ? prices.length - 1 : prices.length;
    while (index > 0 && (descending ? price > prices[index - 1] : price < prices[index - 1])) {
      prices[index] = prices[index - 1];
      quantities[index] = quantities[index - 1];
      index--;
    }
    prices[index] = price;
    quantities[index] = quantity;
  }
  for (let i = 0; i < prices.length; i++) scanned.levels.push([prices[i], quantities[i]]);
  return scanned;
}

/**
 * The best `depth` levels of one side of a book as `[[price, qty], …]`: bids descending, asks ascending; empty
 * levels dropped. Throws PayloadError for a level the hub refuses.
 */
export function bestLevels(book: Record<string, Json>, depth: number, descending: boolean): Json {
  const scanned = scanBookSide(book, depth, descending);
  if (scanned.badQuantityAt !== undefined) {
    const quantity = JSON.stringify(book[scanned.badQuantityAt]);
    throw new PayloadError(
      'orderbook',
      `orderbook quantity ${quantity} at price ${scanned.badQuantityAt} is not a number`,
    );
  }
  if (scanned.copyError !== undefined) throw scanned.copyError;
  if (scanned.badPrice !== undefined) throw priceError(scanned.badPrice);
  return scanned.levels;
}
