/**
 * A model of the b25 React web dashboard's WebSocket client (itziklerner-pag/b25, ui/web/src), so tests can
 * drive the hub with it and read what the pages would show. Written from its sources, not copied:
 * hooks/useWebSocket.ts (`handleMessage`, what it sends on open and as heartbeat), store/trading.ts (the
 * zustand store's actions and what they keep), types/index.ts (the shapes the pages read), config/env.ts
 * (the URL).
 *
 * The client's handler reads untyped JSON (`data?: any`, types/index.ts:94-100) and never validates it: the
 * model does the same property reads in the same order, so whatever a frame does to the real store (a
 * TypeError half-way through a snapshot included) it does to this one.
 */

// ---------------------------------------------------------------------------------------------------------
// types/index.ts

/** types/index.ts:1 */
export type ConnectionStatus = 'connecting' | 'connected' | 'disconnected' | 'error';

/** types/index.ts:3-8 */
export interface OrderBook {
  symbol: string;
  bids: PriceLevel[];
  asks: PriceLevel[];
  timestamp: number;
}

/** types/index.ts:10-13: levels are objects, not [price, size] pairs. */
export interface PriceLevel {
  price: number;
  volume: number;
}

/** types/index.ts:16-25: snake_case, unlike every other entity. */
export interface MarketData {
  last_price: number;
  bid?: number;
  ask?: number;
  high_24h?: number;
  low_24h?: number;
  volume_24h?: number;
  price_change_24h?: number;
  timestamp?: number;
}

/** types/index.ts:27-38 */
export interface Position {
  symbol: string;
  side: 'LONG' | 'SHORT';
  size: number;
  entryPrice: number;
  markPrice: number;
  unrealizedPnl: number;
  leverage: number;
  liquidationPrice: number;
  margin: number;
  timestamp: number;
}

/** types/index.ts:40-51 */
export interface Order {
  id: string;
  symbol: string;
  side: 'BUY' | 'SELL';
  type: 'LIMIT' | 'MARKET' | 'STOP_LIMIT' | 'STOP_MARKET';
  status: 'NEW' | 'PARTIALLY_FILLED' | 'FILLED' | 'CANCELED' | 'REJECTED';
  price?: number;
  quantity: number;
  filledQuantity: number;
  avgFillPrice?: number;
  timestamp: number;
}

/** types/index.ts:53-60 */
export interface Trade {
  id: string;
  symbol: string;
  side: 'BUY' | 'SELL';
  price: number;
  quantity: number;
  timestamp: number;
}

/** types/index.ts:62-71 */
export interface AccountState {
  balance: number;
  equity: number;
  availableBalance: number;
  unrealizedPnl: number;
  realizedPnl: number;
  marginRatio: number;
  totalPnl24h: number;
  timestamp: number;
}

/** types/index.ts:73-80 */
export interface SystemHealth {
  service: string;
  status: 'healthy' | 'degraded' | 'down';
  latency: number;
  lastCheck: number;
  uptime: number;
  errorRate: number;
}

/** types/index.ts:82-90: what `sendOrder` carries. */
export interface OrderRequest {
  symbol: string;
  side: 'BUY' | 'SELL';
  type: 'LIMIT' | 'MARKET' | 'STOP_LIMIT' | 'STOP_MARKET';
  price?: number;
  quantity: number;
  stopPrice?: number;
  timeInForce?: 'GTC' | 'IOC' | 'FOK';
}

/** types/index.ts:92-98: the envelope of every frame in both directions. */
export interface WebSocketMessage {
  type: string;
  data?: unknown;
  changes?: unknown;
  timestamp?: number;
  channel?: string;
}

// ---------------------------------------------------------------------------------------------------------
// What the client connects to and sends.

/** config/env.ts:13: the default `websocketUrl` is `ws://localhost:8086/ws?type=web` (no token). */
export const WEB_UI_PATH = '/ws?type=web';

/** useWebSocket.ts:230: the channels subscribed to on open. */
export const WEB_UI_CHANNELS = [
  'market_data',
  'account',
  'positions',
  'orders',
  'trades',
  'strategies',
  'system_health',
] as const;

/** useWebSocket.ts:17, App.tsx:21-25: a `ping` every 30 s, the first 30 s after open. */
export const WEB_UI_HEARTBEAT_MS = 30_000;

/** App.tsx:23-24 + useWebSocket.ts:250-252: 10 reconnects, 3 s doubling each time, then status 'error'. */
export const WEB_UI_RECONNECT = { intervalMs: 3000, maxAttempts: 10 } as const;

// ---------------------------------------------------------------------------------------------------------
// checkFields: what types/index.ts promises the pages.

/** The entities types/index.ts declares, by interface name. */
export type Kind =
  | 'OrderBook'
  | 'PriceLevel'
  | 'MarketData'
  | 'Position'
  | 'Order'
  | 'Trade'
  | 'AccountState'
  | 'SystemHealth';

type FieldType = 'string' | 'number' | readonly string[] | { arrayOf: Kind };
type Spec = { required: Record<string, FieldType>; optional: Record<string, FieldType> };

const SPECS = {
  OrderBook: {
    required: {
      symbol: 'string',
      bids: { arrayOf: 'PriceLevel' },
      asks: { arrayOf: 'PriceLevel' },
      timestamp: 'number',
    },
    optional: {},
  },
  PriceLevel: { required: { price: 'number', volume: 'number' }, optional: {} },
  MarketData: {
    required: { last_price: 'number' },
    optional: {
      bid: 'number',
      ask: 'number',
      high_24h: 'number',
      low_24h: 'number',
      volume_24h: 'number',
      price_change_24h: 'number',
      timestamp: 'number',
    },
  },
  Position: {
    required: {
      symbol: 'string',
      side: ['LONG', 'SHORT'],
      size: 'number',
      entryPrice: 'number',
      markPrice: 'number',
      unrealizedPnl: 'number',
      leverage: 'number',
      liquidationPrice: 'number',
      margin: 'number',
      timestamp: 'number',
    },
    optional: {},
  },
  Order: {
    required: {
      id: 'string',
      symbol: 'string',
      side: ['BUY', 'SELL'],
      type: ['LIMIT', 'MARKET', 'STOP_LIMIT', 'STOP_MARKET'],
      status: ['NEW', 'PARTIALLY_FILLED', 'FILLED', 'CANCELED', 'REJECTED'],
      quantity: 'number',
      filledQuantity: 'number',
      timestamp: 'number',
    },
    optional: { price: 'number', avgFillPrice: 'number' },
  },
  Trade: {
    required: {
      id: 'string',
      symbol: 'string',
      side: ['BUY', 'SELL'],
      price: 'number',
      quantity: 'number',
      timestamp: 'number',
    },
    optional: {},
  },
  AccountState: {
    required: {
      balance: 'number',
      equity: 'number',
      availableBalance: 'number',
      unrealizedPnl: 'number',
      realizedPnl: 'number',
      marginRatio: 'number',
      totalPnl24h: 'number',
      timestamp: 'number',
    },
    optional: {},
  },
  SystemHealth: {
    required: {
      service: 'string',
      status: ['healthy', 'degraded', 'down'],
      latency: 'number',
      lastCheck: 'number',
      uptime: 'number',
      errorRate: 'number',
    },
    optional: {},
  },
} as const satisfies Record<Kind, Spec>;

function fits(type: FieldType, value: unknown, path: string, out: string[], includeOptional: boolean): void {
  if (type === 'string' || type === 'number') {
    if (typeof value !== type) out.push(path);
  } else if (Array.isArray(type)) {
    if (typeof value !== 'string' || !type.includes(value)) out.push(path);
  } else if (!Array.isArray(value)) {
    out.push(path);
  } else {
    value.forEach((element, index) => {
      collect((type as { arrayOf: Kind }).arrayOf, element, `${path}[${index}]`, out, includeOptional);
    });
  }
}

function collect(kind: Kind, value: unknown, prefix: string, out: string[], includeOptional: boolean): void {
  const spec: Spec = SPECS[kind];
  const record = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  const at = (field: string) => (prefix === '' ? field : `${prefix}.${field}`);
  for (const [field, type] of Object.entries(spec.required)) {
    fits(type, Object.hasOwn(record, field) ? record[field] : undefined, at(field), out, includeOptional);
  }
  if (!includeOptional) return;
  for (const [field, type] of Object.entries(spec.optional)) {
    if (Object.hasOwn(record, field) && record[field] !== undefined) {
      fits(type, record[field], at(field), out, includeOptional);
    }
  }
}

/**
 * The fields types/index.ts declares required (not `?`) for `kind` that `value` lacks or holds with the
 * wrong JS type: `typeof` 'string' / 'number', a literal union (`side`, `type`, `status`) one of its
 * literals, an array of price levels an array whose every level has numeric `price` and `volume` (reported
 * as `bids[2].volume`). A value that is not an object lacks every field. With `includeOptional`, optional
 * fields that are present with the wrong type are reported too (`price: "50000"` on an Order). Empty = fine.
 */
export function checkFields(
  kind: Kind,
  value: unknown,
  options: { includeOptional?: boolean } = {},
): string[] {
  const out: string[] = [];
  collect(kind, value, '', out, options.includeOptional ?? false);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The store and the handler.

// biome-ignore lint/suspicious/noExplicitAny: the client reads frames as `any` (types/index.ts:94-95, useWebSocket.ts:72-95); the model must make the very same reads, with the same JS semantics, to fail where it fails
type Loose = any;

export type StoreAction =
  | 'setLatency'
  | 'updateOrderBook'
  | 'updateMarketData'
  | 'updatePosition'
  | 'updateOrder'
  | 'removeOrder'
  | 'addTrade'
  | 'updateAccount'
  | 'updateSystemHealth';

export interface WebUiModelOptions {
  /** The clock `Date.now()` reads in the client (latency, stored timestamps, the heartbeat); default Date.now. */
  now?: () => number;
}

/** The client's store (store/trading.ts) as its WebSocket hook (hooks/useWebSocket.ts) fills it. */
export class WebUiModel {
  // store/trading.ts:70-89: the initial state
  latency = 0;
  lastUpdate: number;
  orderbooks = new Map<Loose, OrderBook>();
  marketData = new Map<Loose, MarketData>();
  positions = new Map<Loose, Position>();
  orders = new Map<Loose, Order>();
  trades: Trade[] = [];
  account: AccountState | null = null;
  systemHealth: SystemHealth[] = [];
  debugInfo = { lastWsMessage: 0, lastStoreUpdate: 0, updateCount: 0, lastSymbol: '', lastPrice: 0 };

  /** Frames received. */
  received = 0;
  /**
   * Everything the handler's `catch` caught (useWebSocket.ts:177-179 logs 'Error parsing message'): JSON
   * syntax errors, and also TypeErrors thrown while applying a frame (a `null` frame, a `null` order in a
   * snapshot's list...). Actions applied before the throw stay applied, as in the client.
   */
  readonly parseErrors: { text: string; error: string }[] = [];
  /** `message.type` of frames the switch does not know (useWebSocket.ts:174-175 logs a warning). */
  readonly unknownTypes: unknown[] = [];
  /** Frames by the switch case they reached ('pong' counts only pongs that set the latency). */
  readonly handled: Record<string, number> = {};
  /** Store actions applied. */
  readonly actions: Record<StoreAction, number> = {
    setLatency: 0,
    updateOrderBook: 0,
    updateMarketData: 0,
    updatePosition: 0,
    updateOrder: 0,
    removeOrder: 0,
    addTrade: 0,
    updateAccount: 0,
    updateSystemHealth: 0,
  };

  private readonly now: () => number;

  constructor(options: WebUiModelOptions = {}) {
    this.now = options.now ?? Date.now;
    this.lastUpdate = this.now();
  }

  /** One text frame: `ws.onmessage = handleMessage` (useWebSocket.ts:272). */
  receive(text: string): void {
    this.received += 1;
    try {
      this.handleMessage(text);
    } catch (error) {
      // useWebSocket.ts:177-179
      this.parseErrors.push({ text, error: error instanceof Error ? error.message : String(error) });
    }
  }

  /** `ws.onclose` (useWebSocket.ts:236-247): `clearData()` (store/trading.ts:192-202); systemHealth stays. */
  close(): void {
    this.orderbooks = new Map();
    this.marketData = new Map();
    this.positions = new Map();
    this.orders = new Map();
    this.trades = [];
    this.account = null;
  }

  private count(kind: string): void {
    this.handled[kind] = (this.handled[kind] ?? 0) + 1;
  }

  /** useWebSocket.ts:37-192, statement for statement. */
  private handleMessage(data: string): void {
    const message: Loose = JSON.parse(data); // :40
    // :42-46: the debug log reads these, so a `null` frame throws here
    log(message.type, message.channel);

    // :49-54: a truthy `timestamp` only (0, '', null fall through to the switch, where 'pong' is unknown);
    // the subtraction coerces as JS does ('123' → 123, an ISO string → NaN)
    if (message.type === 'pong' && message.timestamp) {
      const now = this.now();
      this.setLatency(now - message.timestamp);
      this.count('pong');
      return;
    }

    switch (message.type) {
      case 'snapshot':
      case 'full_state':
        this.count(message.type);
        // :61-98
        if (message.data) {
          log(
            !!message.data.market_data,
            !!message.data.account,
            !!message.data.orders,
            !!message.data.positions,
          );
          if (message.data.market_data) {
            for (const [symbol, entry] of Object.entries<Loose>(message.data.market_data)) {
              // :74: a defined `last_price` makes it a price; else truthy `bids` and `asks` make it a book
              if (entry.last_price !== undefined) {
                this.updateMarketData(symbol, entry);
              } else if (entry.bids && entry.asks) {
                this.updateOrderBook(symbol, { ...entry, symbol, timestamp: this.now() });
              }
            }
          }
          if (message.data.account) {
            this.updateAccount(message.data.account);
          }
          // :90: only an array; each replaces by `id` (nothing is ever removed by a snapshot)
          if (message.data.orders && Array.isArray(message.data.orders)) {
            for (const order of message.data.orders) this.updateOrder(order);
          }
          // :94: `Object.values`, so an object keyed by symbol and an array both work
          if (message.data.positions) {
            for (const position of Object.values<Loose>(message.data.positions))
              this.updatePosition(position);
          }
        }
        break;

      case 'update':
      case 'incremental': {
        this.count(message.type);
        // :104: `changes` first, then `data`; only market data and the account are read
        const updateData = message.changes || message.data;
        if (updateData) {
          log(!!message.changes, !!message.data, !!(updateData.market_data || updateData.MarketData));
          const marketDataUpdates = updateData.market_data || updateData.MarketData;
          if (marketDataUpdates) {
            for (const [symbol, entry] of Object.entries<Loose>(marketDataUpdates)) {
              // :118: `LastPrice` also counts, but is stored as is (the pages read `last_price`)
              if (entry.last_price !== undefined || entry.LastPrice !== undefined) {
                this.updateMarketData(symbol, entry);
              } else if (entry.bids && entry.asks) {
                this.updateOrderBook(symbol, { ...entry, symbol, timestamp: this.now() });
              }
            }
          }
          const accountUpdate = updateData.account || updateData.Account;
          if (accountUpdate) {
            this.updateAccount(accountUpdate);
          }
        }
        break;
      }

      case 'orderbook':
        this.count(message.type);
        // :135-137: stored as sent, keyed by its own `symbol`, no timestamp added
        if (message.data) {
          this.updateOrderBook(message.data.symbol, message.data);
        }
        break;

      case 'position':
        this.count(message.type);
        if (message.data) {
          this.updatePosition(message.data);
        }
        break;

      case 'order':
        this.count(message.type);
        // :148: FILLED and CANCELED remove; anything else (REJECTED too) is stored
        if (message.data) {
          if (message.data.status === 'FILLED' || message.data.status === 'CANCELED') {
            this.removeOrder(message.data.id);
          } else {
            this.updateOrder(message.data);
          }
        }
        break;

      case 'trade':
        this.count(message.type);
        if (message.data) {
          this.addTrade(message.data);
        }
        break;

      case 'account':
        this.count(message.type);
        if (message.data) {
          this.updateAccount(message.data);
        }
        break;

      case 'system_health':
        this.count(message.type);
        if (message.data) {
          this.updateSystemHealth(message.data);
        }
        break;

      default:
        // :174-175
        this.count('unknown');
        this.unknownTypes.push(message.type);
    }
  }

  // store/trading.ts actions. Each reads what it reads before it writes, so one that throws writes nothing.

  /** store/trading.ts:94 */
  private setLatency(latency: number): void {
    this.latency = latency;
    this.actions.setLatency += 1;
  }

  /** store/trading.ts:97-103: replaces the symbol's book. */
  private updateOrderBook(symbol: Loose, data: Loose): void {
    this.orderbooks.set(symbol, data);
    this.lastUpdate = this.now();
    this.actions.updateOrderBook += 1;
  }

  /** store/trading.ts:105-138: REPLACES the symbol's entry with `{...data, timestamp: now}` (no merge). */
  private updateMarketData(symbol: Loose, data: Loose): void {
    const timestamp = this.now();
    const entry = { ...data, timestamp };
    const debugInfo = {
      lastWsMessage: timestamp,
      lastStoreUpdate: timestamp,
      updateCount: this.debugInfo.updateCount + 1,
      lastSymbol: symbol,
      lastPrice: data.last_price || 0,
    };
    log(data.last_price, data.price_change_24h);
    this.marketData.set(symbol, entry);
    this.lastUpdate = timestamp;
    this.debugInfo = debugInfo;
    this.actions.updateMarketData += 1;
  }

  /** store/trading.ts:140-147: keyed by `position.symbol`. */
  private updatePosition(position: Loose): void {
    const key = position.symbol;
    this.positions.set(key, position);
    this.lastUpdate = this.now();
    this.actions.updatePosition += 1;
  }

  /** store/trading.ts:149-156: keyed by `order.id`. */
  private updateOrder(order: Loose): void {
    const key = order.id;
    this.orders.set(key, order);
    this.lastUpdate = this.now();
    this.actions.updateOrder += 1;
  }

  /** store/trading.ts:158-165 */
  private removeOrder(orderId: Loose): void {
    this.orders.delete(orderId);
    this.lastUpdate = this.now();
    this.actions.removeOrder += 1;
  }

  /** store/trading.ts:167-175: newest first, 100 kept. */
  private addTrade(trade: Loose): void {
    log(trade.symbol, trade.side);
    this.trades = [trade, ...this.trades].slice(0, 100);
    this.lastUpdate = this.now();
    this.actions.addTrade += 1;
  }

  /** store/trading.ts:177-180: replaced whole (no merge). */
  private updateAccount(account: Loose): void {
    log(account.balance, account.equity);
    this.account = account;
    this.lastUpdate = this.now();
    this.actions.updateAccount += 1;
  }

  /** store/trading.ts:182-185: replaced whole, stored as sent (an object too); `lastUpdate` untouched. */
  private updateSystemHealth(health: Loose): void {
    log(health.length);
    this.systemHealth = health;
    this.actions.updateSystemHealth += 1;
  }

  // What the client sends, built as the client builds it.

  /** useWebSocket.ts:227-232: sent on open. */
  subscribeMessage(): string {
    return JSON.stringify({ type: 'subscribe', channels: [...WEB_UI_CHANNELS] });
  }

  /** useWebSocket.ts:194-204: every 30 s. */
  heartbeat(): string {
    return JSON.stringify({ type: 'ping', timestamp: this.now() });
  }

  /** store/trading.ts:205-219 `sendOrder` */
  orderMessage(order: OrderRequest): string {
    return JSON.stringify({ type: 'order', action: 'create', data: order });
  }

  /** store/trading.ts:221-235 `cancelOrder` */
  cancelMessage(orderId: string): string {
    return JSON.stringify({ type: 'order', action: 'cancel', data: { orderId } });
  }

  /** store/trading.ts:237-251 `closePosition` */
  closePositionMessage(symbol: string): string {
    return JSON.stringify({ type: 'position', action: 'close', data: { symbol } });
  }

  /** store/trading.ts:253-264 `subscribe`: one `channel`, not a `channels` list. */
  subscribeChannel(channel: string): string {
    return JSON.stringify({ type: 'subscribe', channel });
  }

  /** store/trading.ts:266-277 `unsubscribe` */
  unsubscribeChannel(channel: string): string {
    return JSON.stringify({ type: 'unsubscribe', channel });
  }
}

/** Stands for the client's logger calls: their arguments are evaluated (and may throw) but nothing is kept. */
function log(..._values: unknown[]): void {}
