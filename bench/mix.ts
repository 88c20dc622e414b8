/**
 * The client population of a scenario: which type, format and subscription set each client has. Shared by the
 * runner, the load generators and the baseline servers so they all agree on what a "class" of client is.
 */
export type ClientType = 'tui' | 'web';
export type Format = 'json' | 'msgpack';

export interface ClientSpec {
  index: number;
  type: ClientType;
  format: Format;
  /** Name of the subscription set (the class, together with type and format). */
  set: string;
  subscriptions: string[];
  /** This client decodes every message it gets (latency, sequence checks); the others only count bytes. */
  sampled: boolean;
  /** Which server of the run it connects to (the hub-replicas runs: one of the replicas); 0 when absent. */
  replica?: number;
}

export function symbolNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `SYM${i}USDT`);
}

/** How many distinct symbols the per-symbol sets spread over (each makes its own group in the hub). */
const FOCUS_SYMBOLS = 4;

/**
 * Subscription sets per client type, cycled through by client index. TUI: the whole trading view (~8 KB diffs
 * with 10 symbols: every book), one symbol's book plus prices and the account (~1.5 KB), prices and account
 * (~1 KB). Web: an overview, one symbol's page, all books (at 250 ms).
 */
const SETS: Record<ClientType, { name: string; subscriptions: (symbol: string) => string[] }[]> = {
  tui: [
    {
      name: 'tui-full',
      subscriptions: () => ['market_data', 'orderbook', 'trades', 'orders', 'positions', 'account', 'system'],
    },
    {
      name: 'tui-symbol',
      subscriptions: (s) => [
        'market_data',
        `orderbook:${s}`,
        `trades:${s}`,
        'orders',
        'positions',
        'account',
      ],
    },
    {
      name: 'tui-symbol',
      subscriptions: (s) => [
        'market_data',
        `orderbook:${s}`,
        `trades:${s}`,
        'orders',
        'positions',
        'account',
      ],
    },
    { name: 'tui-prices', subscriptions: () => ['market_data', 'orders', 'positions', 'account'] },
  ],
  web: [
    {
      name: 'web-overview',
      subscriptions: () => ['market_data', 'orders', 'positions', 'account', 'strategies'],
    },
    { name: 'web-symbol', subscriptions: (s) => [`market_data:${s}`, `orderbook:${s}`, `trades:${s}`] },
    {
      name: 'web-overview',
      subscriptions: () => ['market_data', 'orders', 'positions', 'account', 'strategies'],
    },
    { name: 'web-symbol', subscriptions: (s) => [`market_data:${s}`, `orderbook:${s}`, `trades:${s}`] },
    { name: 'web-books', subscriptions: () => ['market_data', 'orderbook'] },
  ],
};

/** The default share of `web` clients: none up to 5,000 clients (the TUI targets), 80% beyond (the stretch target). */
export function defaultWebShare(clients: number): number {
  return clients > 5000 ? 0.8 : 0;
}

/**
 * The population of `clients` clients: `webShare` of them `web`, the rest `tui`, interleaved; formats alternate
 * json/msgpack; about `sampledTarget` clients (spread evenly, so across the send order) are sampled.
 */
export function population(
  clients: number,
  webShare: number,
  symbols: string[],
  sampledTarget = 120,
): ClientSpec[] {
  // Interleave: client i is web when it brings the web count up to its share.
  const types: ClientType[] = [];
  let webs = 0;
  for (let index = 0; index < clients; index++) {
    const web = webShare > 0 && (index + 1) * webShare >= webs + 1;
    if (web) webs++;
    types.push(web ? 'web' : 'tui');
  }
  // Sample each type in proportion, every k-th of its clients, with k not a multiple of the number of sets (so
  // the sampled clients cover every set and both formats).
  const every: Record<ClientType, number> = { tui: 1, web: 1 };
  for (const type of ['tui', 'web'] as const) {
    const count = type === 'web' ? webs : clients - webs;
    const wanted = Math.max(1, Math.round((sampledTarget * count) / Math.max(1, clients)));
    let k = Math.max(1, Math.floor(count / wanted));
    while (k > 1 && (k % SETS[type].length === 0 || k % 2 === 0)) k++;
    every[type] = k;
  }
  const seen: Record<ClientType, number> = { tui: 0, web: 0 };
  return types.map((type, index) => {
    const nth = seen[type]++;
    const sets = SETS[type];
    const set = sets[nth % sets.length];
    const symbol = symbols[Math.floor(nth / (sets.length * 2)) % Math.min(FOCUS_SYMBOLS, symbols.length)];
    return {
      index,
      type,
      format: Math.floor(nth / sets.length) % 2 === 0 ? 'json' : 'msgpack',
      set: set.name,
      subscriptions: set.subscriptions(symbol),
      sampled: sampledTarget > 0 && nth % every[type] === 0,
    };
  });
}

/**
 * Deals the clients out to `replicas` servers in contiguous blocks: each block holds whole cycles of the sets,
 * formats and symbols (they repeat every 32 tui or 40 web clients) and its share of the sampled clients, so every
 * replica gets the same mix.
 */
export function splitAmong(specs: ClientSpec[], replicas: number): ClientSpec[] {
  return specs.map((spec, i) => ({ ...spec, replica: Math.floor((i * replicas) / specs.length) }));
}

/** The class of a client: type, format and set. Bytes and sizes are reported per class. */
export function classOf(spec: { type: ClientType; format: Format; set: string }): string {
  return `${spec.type}|${spec.format}|${spec.set}`;
}

/** The md symbols a subscription list covers (`all` for the whole market_data topic). */
export function marketDataScope(subscriptions: string[], symbols: string[]): string[] {
  if (subscriptions.includes('market_data')) return symbols;
  return subscriptions.filter((s) => s.startsWith('market_data:')).map((s) => s.slice('market_data:'.length));
}
