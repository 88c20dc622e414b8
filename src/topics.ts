/**
 * The topics a backend publishes to (Redis channels `<topic>:*`, NATS subjects mapped onto them), in the order
 * snapshots list them.
 */
export const INGEST_TOPICS = [
  'market_data',
  'orderbook',
  'trades',
  'orders',
  'positions',
  'account',
  'strategies',
  'fills',
  'alerts',
  'risk',
] as const;
export type IngestTopic = (typeof INGEST_TOPICS)[number];

/** Every section of the aggregated state: the ingest topics, then `system` (the hub's own). */
export const TOPICS = [...INGEST_TOPICS, 'system'] as const;
export type Topic = (typeof TOPICS)[number];

/** Sections keyed by an id; the others (`account`, `system`) hold one object. */
export const KEYED_TOPICS = new Set<Topic>([
  'market_data',
  'orderbook',
  'trades',
  'orders',
  'positions',
  'strategies',
  'fills',
  'alerts',
]);
/** Sections a client may narrow to one symbol, as `orderbook:BTCUSDT`. */
export const SYMBOL_SCOPED_TOPICS = new Set<Topic>(['market_data', 'orderbook', 'trades', 'fills']);

const TOPIC_SET = new Set<string>(TOPICS);
/** A symbol as backends publish it and clients name it (`BTCUSDT`, `btc-usd`); upper-cased once accepted. */
export const SYMBOL_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

export function isTopic(name: string): name is Topic {
  return TOPIC_SET.has(name);
}

/** What a client sees of one topic: all of it, or only some keys (symbols). */
export type TopicScope = 'all' | ReadonlySet<string>;
/** A normalized subscription set: for each subscribed topic, its scope. */
export type Filter = ReadonlyMap<Topic, TopicScope>;

export class TopicError extends Error {
  readonly code = 'unknown_topic';
  readonly topic: string;
  constructor(topic: string) {
    super(`unknown topic ${JSON.stringify(topic)}`);
    this.topic = topic;
  }
}

/** Checks one subscription name (`orders`, `trades:ETHUSDT`); throws TopicError for anything else. */
export function validateSubscription(name: string): string {
  const colon = name.indexOf(':');
  if (colon === -1) {
    if (isTopic(name)) return name;
    throw new TopicError(name);
  }
  const topic = name.slice(0, colon);
  const symbol = name.slice(colon + 1);
  if (isTopic(topic) && SYMBOL_SCOPED_TOPICS.has(topic) && SYMBOL_PATTERN.test(symbol)) {
    return `${topic}:${symbol.toUpperCase()}`;
  }
  throw new TopicError(name);
}

/** Builds the filter of a set of validated subscription names; a whole topic wins over its symbols. */
export function buildFilter(subscriptions: Iterable<string>): Filter {
  const filter = new Map<Topic, 'all' | Set<string>>();
  for (const name of subscriptions) {
    const colon = name.indexOf(':');
    const topic = (colon === -1 ? name : name.slice(0, colon)) as Topic;
    if (colon === -1) {
      filter.set(topic, 'all');
      continue;
    }
    const scope = filter.get(topic);
    if (scope === 'all') continue;
    const keys = scope ?? new Set<string>();
    keys.add(name.slice(colon + 1));
    filter.set(topic, keys);
  }
  return filter;
}

/** A stable key for a subscription set, so clients with the same set share one group. */
export function subscriptionKey(subscriptions: Iterable<string>): string {
  return [...subscriptions].sort().join(',');
}

export function filterIncludes(filter: Filter, topic: Topic, key: string): boolean {
  const scope = filter.get(topic);
  if (scope === undefined) return false;
  return scope === 'all' || !KEYED_TOPICS.has(topic) || scope.has(key);
}
