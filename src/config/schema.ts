/**
 * The config file schema: the single source for validation, the `Config` type and the config reference
 * (docs/configuration.md). Durations and sizes decode to milliseconds and bytes (`Type.Transform`), so the
 * type the service reads is `StaticDecode` of this schema; only `auth.jwt`'s keys are gathered in a step of
 * their own (jwt-keys.ts), and `Config` below says so.
 */
import { type StaticDecode, type TSchema, Type } from '@sinclair/typebox';
import { INGEST_TOPICS, SYMBOL_PATTERN, TOPICS } from '../topics.ts';
import { DURATION_PATTERN, parseDuration, parseSize, SIZE_PATTERN } from './units.ts';

/** A duration like `30s` in the file; milliseconds in the config. */
const Duration = (defaultValue: string) =>
  Type.Transform(
    Type.String({
      pattern: DURATION_PATTERN,
      default: defaultValue,
      description: 'a duration like 100ms, 30s, 10m, 2h or 30d',
    }),
  )
    .Decode((text) => parseDuration(text))
    .Encode((ms) => `${ms}ms`);
/** A size like `64KiB` or a byte count in the file; bytes in the config. `minimum` 0 lets 0 mean "off". */
const Size = (
  defaultValue: string,
  { minimum = 1, description = 'a byte count, or a size like 64KiB or 1MiB' } = {},
) =>
  Type.Transform(
    Type.Union([Type.Integer({ minimum }), Type.String({ pattern: SIZE_PATTERN })], {
      default: defaultValue,
      description,
    }),
  )
    .Decode((value) => parseSize(value))
    .Encode((bytes) => bytes);

/** One of `values`, typed as their union (a union built by `map` would be typed `never`). */
const OneOf = <const T extends readonly string[]>(values: T, options: { default?: T[number] } = {}) =>
  Type.Unsafe<T[number]>(
    Type.Union(
      values.map((value) => Type.Literal(value)),
      options,
    ),
  );

const topicPrefixes = INGEST_TOPICS.join('|');

export const JWT_ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** `https://app.example.com`, `http://localhost:3000`, or `https://*.example.com`. */
const ORIGIN_PATTERN = '^https?://(\\*\\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$';
/** The shape of a CIDR; checks.ts checks the address and the prefix length. */
const CIDR_PATTERN = '^[0-9A-Fa-f:.]+/[0-9]{1,3}$';
const TopicOrWildcard = OneOf([...TOPICS, '*']);
const OneOrMany = <T extends TSchema>(item: T) =>
  Type.Optional(Type.Union([item, Type.Array(item, { minItems: 1 })]));
const GRPC_ADDRESS = '^[A-Za-z0-9.-]+:[0-9]{1,5}$';
/** A NATS subject to subscribe to: dot-separated tokens, `*` for one token, a final `>` for the rest. */
const NATS_SUBJECT = '^(?:(?:[^.*>\\s]+|\\*)\\.)*(?:[^.*>\\s]+|\\*|>)$';
const Subject = (defaultValue: string) =>
  Type.String({ pattern: NATS_SUBJECT, maxLength: 256, default: defaultValue });
const HTTP_URL = '^https?://[^/]+$';
const Breaker = () =>
  Type.Object(
    {
      error_threshold_percentage: Type.Integer({ minimum: 1, maximum: 100, default: 50 }),
      volume_threshold: Type.Integer({ minimum: 1, default: 3 }),
      reset_timeout: Duration('60s'),
      rolling_window: Duration('5m'),
    },
    { additionalProperties: false, default: {} },
  );
/** A backend to poll: absent means not polled. */
const Backend = <T extends Record<string, TSchema>>(urlPattern: string, extra: T) =>
  Type.Optional(
    Type.Object(
      {
        url: Type.String({ pattern: urlPattern }),
        interval: Duration('30s'),
        timeout: Duration('5s'),
        api_key: Type.Optional(Type.String({ minLength: 1 })),
        breaker: Breaker(),
        ...extra,
      },
      { additionalProperties: false },
    ),
  );
const RateLimit = (max: number, window: string) =>
  Type.Object(
    { max: Type.Integer({ minimum: 1, default: max }), window: Duration(window) },
    { additionalProperties: false, default: {} },
  );

/** The config file schema: the single source for validation, types and the config reference. */
export const ConfigFileSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ minLength: 1, default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8086 }),
        log_level: OneOf(LOG_LEVELS, { default: 'info' }),
        shutdown_timeout: Duration('30s'),
        /**
         * Reverse proxies (CIDRs) whose `X-Forwarded-For` is believed: Fastify's `trustProxy`. Empty: none, the
         * client address is the socket's peer. Never `true`: a list only, and no `/0`.
         */
        trust_proxy: Type.Array(Type.String({ pattern: CIDR_PATTERN }), { default: [] }),
        /**
         * Processes serving the port (Node's cluster): each a replica with its own clients and connections, one of
         * them leading; a worker that dies is started again. 1: this process serves, no cluster.
         */
        workers: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
      },
      { additionalProperties: false, default: {} },
    ),
    redis: Type.Object(
      {
        url: Type.String({ pattern: '^rediss?://', default: 'redis://localhost:6379' }),
        db: Type.Integer({ minimum: 0, maximum: 15, default: 0 }),
        channels: Type.Array(Type.String({ pattern: `^(${topicPrefixes}):.+$` }), {
          minItems: 1,
          default: INGEST_TOPICS.map((topic) => `${topic}:*`),
        }),
        /** between PINGs on the reader connection */
        health_check_interval: Duration('1s'),
        /** without a PING reply before Redis counts as stalled */
        health_check_timeout: Duration('2s'),
      },
      { additionalProperties: false, default: {} },
    ),
    /** One replica of a fleet leads: it polls the backends, writes history and relays the polls (docs/replicas.md). */
    leader: Type.Object(
      {
        /** how long the lease lasts unrenewed: a dead leader is replaced within it */
        lease: Duration('10s'),
        /**
         * The lease's Redis key; the fleet's other keys and its channel are named after it (`<key>:polls`,
         * `<key>:sections`, `<key>:takeovers`, `<key>:clients:<user>`). Replicas on one Redis with the same key are
         * one fleet.
         */
        key: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,200}$', default: 'dashboard-server:leader' }),
      },
      { additionalProperties: false, default: {} },
    ),
    nats: Type.Object(
      {
        /**
         * The NATS server (`nats://host:4222`, `nats://user:password@host:4222`, several separated by commas); unset:
         * no NATS, orders, fills, alerts and risk come from Redis and the polls only.
         */
        url: Type.Optional(Type.String({ pattern: '^(nats|tls)://[^\\s]+$', maxLength: 2048 })),
        subjects: Type.Object(
          {
            orders: Subject('orders.updates.*'),
            fills: Subject('trading.fills'),
            alerts: Subject('trading.alerts'),
            risk_metrics: Subject('risk.metrics'),
            risk_alerts: Subject('risk.alerts.*'),
          },
          { additionalProperties: false, default: {} },
        ),
        /** between the client's PINGs: two unanswered and the connection is taken as lost (and re-established) */
        ping_interval: Duration('5s'),
      },
      { additionalProperties: false, default: {} },
    ),
    history: Type.Object(
      {
        /** PostgreSQL (`postgres://user:password@host:5432/db`); unset: nothing is recorded, the routes answer 503. */
        database_url: Type.Optional(Type.String({ pattern: '^postgres(ql)?://[^\\s]+$', maxLength: 2048 })),
        /** between two writes: each writes what was queued, one multi-row insert per table */
        flush_interval: Duration('1s'),
        /** between two samples of the account (equity curve); a change of sign of its unrealized PnL adds one */
        account_interval: Duration('10s'),
        /** how long rows are kept: whole day partitions older than this are dropped */
        retention: Duration('30d'),
        /** most rows waiting per kind (~230 bytes each); past it the oldest are dropped (dashboard_history_dropped_total) */
        queue_max_rows: Type.Integer({ minimum: 100, maximum: 10_000_000, default: 50_000 }),
        /** the largest `limit` a history query takes */
        max_rows: Type.Integer({ minimum: 1, maximum: 100_000, default: 1000 }),
        /** the most candles (or equity points) one query returns: a longer range needs a longer interval */
        max_buckets: Type.Integer({ minimum: 1, maximum: 100_000, default: 1500 }),
        breaker: Breaker(),
      },
      { additionalProperties: false, default: {} },
    ),
    websocket: Type.Object(
      {
        ping_interval: Duration('30s'),
        read_timeout: Duration('60s'),
        max_message_size: Size('64KiB'),
        max_buffered: Size('1MiB'),
        max_lag: Duration('10s'),
        allowed_origins: Type.Array(Type.String({ pattern: ORIGIN_PATTERN }), { default: [] }),
        require_origin: Type.Boolean({ default: false }),
        max_subscriptions: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
        max_clients: Type.Integer({ minimum: 1, default: 10000 }),
        max_clients_per_user: Type.Integer({ minimum: 1, default: 20 }),
        /**
         * `max_clients_per_user` across every replica of the fleet (counts in Redis, kept alive by each replica,
         * aging out with a dead one); off: per replica.
         */
        global_limits: Type.Boolean({ default: false }),
        rate_limit: Type.Object(
          {
            messages_per_second: Type.Number({ exclusiveMinimum: 0, default: 10 }),
            burst: Type.Integer({ minimum: 1, default: 20 }),
            max_violations: Type.Integer({ minimum: 1, default: 20 }),
            window: Duration('10s'),
          },
          { additionalProperties: false, default: {} },
        ),
        connect_rate_limit: RateLimit(60, '1m'),
      },
      { additionalProperties: false, default: {} },
    ),
    http: Type.Object({ rate_limit: RateLimit(300, '1m') }, { additionalProperties: false, default: {} }),
    auth: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        default_role: Type.String({ minLength: 1, default: 'viewer' }),
        topic_roles: Type.Record(Type.String({ minLength: 1 }), Type.Array(TopicOrWildcard), {
          default: {
            viewer: ['market_data', 'orderbook', 'trades', 'strategies', 'system'],
            trader: ['*'],
            admin: ['*'],
          },
        }),
        /** Token-less /ws upgrades and /api/v1/state requests from these addresses, with this role. */
        anonymous: Type.Object(
          {
            enabled: Type.Boolean({ default: false }),
            role: Type.String({ minLength: 1, default: 'viewer' }),
            allowed_cidrs: Type.Array(Type.String({ pattern: CIDR_PATTERN }), { default: [] }),
          },
          { additionalProperties: false, default: {} },
        ),
        jwt: Type.Object(
          {
            algorithms: Type.Array(OneOf(JWT_ALGORITHMS), {
              minItems: 1,
              default: ['HS256'],
            }),
            secret: OneOrMany(Type.String({ minLength: 1 })),
            secret_file: OneOrMany(Type.String({ minLength: 1 })),
            public_key: OneOrMany(Type.String({ pattern: '-----BEGIN PUBLIC KEY-----' })),
            public_key_file: OneOrMany(Type.String({ minLength: 1 })),
            issuer: Type.Optional(Type.String({ minLength: 1 })),
            audience: Type.Optional(Type.String({ minLength: 1 })),
            clock_tolerance: Duration('5s'),
          },
          { additionalProperties: false, default: {} },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    backend_services: Type.Object(
      {
        order_execution: Backend(GRPC_ADDRESS, {
          /** the `limit` of GetOrders */
          limit: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 5000 }),
        }),
        /** the account of GetRiskMetrics */
        risk_manager: Backend(GRPC_ADDRESS, { account_id: Type.String({ default: '' }) }),
        account_monitor: Backend(HTTP_URL, {}),
        strategy_engine: Backend(HTTP_URL, {}),
        /** no `url`: market data's truth is in Redis; this polls the hub's own view of it */
        market_data: Type.Optional(
          Type.Object(
            { interval: Duration('30s'), timeout: Duration('5s'), breaker: Breaker() },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Trading actions from clients, forwarded to order-execution (src/actions/). */
    actions: Type.Object(
      {
        enabled: Type.Boolean({ default: false }),
        roles: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, default: ['trader'] }),
        rate_limit: RateLimit(10, '1m'),
        timeout: Duration('5s'),
      },
      { additionalProperties: false, default: {} },
    ),
    legacy: Type.Object(
      {
        /** the book sent to the b25 terminal UI (it never says which); absent: the first symbol with a book */
        tui_orderbook_symbol: Type.Optional(Type.String({ pattern: SYMBOL_PATTERN.source })),
      },
      { additionalProperties: false, default: {} },
    ),
    ops: Type.Object(
      {
        allowed_cidrs: Type.Array(Type.String({ pattern: CIDR_PATTERN }), { default: [] }),
        /**
         * Host names (besides IP addresses, `localhost` and this machine's name) an address-granted ops request may
         * name in its Host header: a page that rebinds its own name to the hub's address is refused.
         */
        allowed_hosts: Type.Array(Type.String({ pattern: '^[A-Za-z0-9.-]{1,253}$' }), { default: [] }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** OpenTelemetry traces (docs/tracing.md): off, nothing of the SDK loaded, unless `endpoint` is set. */
    tracing: Type.Object(
      {
        /** The OTLP/HTTP collector's base URL (`http://collector:4318`); `/v1/traces` is appended. */
        endpoint: Type.Optional(
          Type.String({
            pattern: '^https?://[^\\s?#]+(?<!/v1/traces/?)$',
            maxLength: 2048,
            description:
              "the collector's base URL, http:// or https:// (/v1/traces is appended: leave it out)",
          }),
        ),
        /** The share of traces recorded (TraceIdRatioBasedSampler): polls, actions, history writes, HTTP requests. */
        sample_ratio: Type.Number({ minimum: 0, maximum: 1, default: 1 }),
        /** The share of Redis and NATS messages given a span, before `sample_ratio` applies to those too. */
        message_sample_ratio: Type.Number({ minimum: 0, maximum: 1, default: 0.01 }),
      },
      { additionalProperties: false, default: {} },
    ),
    broadcast: Type.Object(
      {
        tui_interval: Duration('100ms'),
        web_interval: Duration('250ms'),
        send_phases: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
      },
      { additionalProperties: false, default: {} },
    ),
    ingest: Type.Object(
      {
        orderbook_depth: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }),
        trades_kept: Type.Integer({ minimum: 1, maximum: 10000, default: 50 }),
        fills_kept: Type.Integer({ minimum: 1, maximum: 10000, default: 100 }),
        alerts_kept: Type.Integer({ minimum: 1, maximum: 10000, default: 100 }),
        terminal_order_retention: Duration('10m'),
        max_message_size: Size('1MiB'),
        max_symbols: Type.Integer({ minimum: 1, default: 1000 }),
        symbol_idle_ttl: Duration('1h'),
        max_record_size: Size('16KiB'),
        max_entries: Type.Integer({ minimum: 1, default: 10000 }),
        max_state_size: Size('32MiB'),
        orderbook_pending_max_size: Size('16MiB', {
          minimum: 0,
          description:
            'most bytes of order books waiting to be ingested (the latest per channel); 0: each book inline',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

/** The file as decoded: durations in milliseconds, sizes in bytes, absent backends absent. */
export type ConfigFile = StaticDecode<typeof ConfigFileSchema>;

type JwtFile = ConfigFile['auth']['jwt'];
/**
 * `auth.jwt` as the service reads it: `secret` + `secret_file` become `secrets` (shared secrets for HS* tokens),
 * `public_key` + `public_key_file` become `public_keys` (PEM keys for RS*, PS*, ES*). See jwt-keys.ts.
 */
export type JwtConfig = Omit<JwtFile, 'secret' | 'secret_file' | 'public_key' | 'public_key_file'> & {
  secrets: string[];
  public_keys: string[];
};
/** The validated configuration: the decoded file, with `auth.jwt`'s keys gathered. */
export type Config = Omit<ConfigFile, 'auth'> & {
  auth: Omit<ConfigFile['auth'], 'jwt'> & { jwt: JwtConfig };
};

type Backends = ConfigFile['backend_services'];
type AnyBackend = NonNullable<Backends[keyof Backends]>;
type UnionToIntersection<U> = (U extends unknown ? (u: U) => void : never) extends (i: infer I) => void
  ? I
  : never;
/** One polled backend: the keys every backend has, and those of some (`url`, `limit`, `account_id`) optional. */
export type BackendConfig = Pick<AnyBackend, keyof AnyBackend> & Partial<UnionToIntersection<AnyBackend>>;
export type BreakerConfig = AnyBackend['breaker'];
