import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { parse as parseYaml } from 'yaml';
import { AddressAllowlist } from './access.ts';
import type { SourceName } from './backends.ts';
import { INGEST_TOPICS, TOPICS } from './topics.ts';

/** A configuration problem: the message is one line naming the key, the value and what was expected. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DURATION_PATTERN = '^[0-9]+(\\.[0-9]+)?(ms|s|m|h)$';
const SIZE_PATTERN = '^[0-9]+ ?(B|KiB|MiB|GiB)$';
const Duration = (defaultValue: string) =>
  Type.String({
    pattern: DURATION_PATTERN,
    default: defaultValue,
    description: 'a duration like 100ms, 30s, 10m, 2h',
  });
const Size = (defaultValue: string) =>
  Type.Union([Type.Integer({ minimum: 1 }), Type.String({ pattern: SIZE_PATTERN })], {
    default: defaultValue,
    description: 'a byte count, or a size like 64KiB or 1MiB',
  });

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
/** `https://app.example.com`, `http://localhost:3000`, or `https://*.example.com`. */
const ORIGIN_PATTERN = '^https?://(\\*\\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?$';
const CIDR_PATTERN = '^[0-9A-Fa-f:.]+/[0-9]{1,3}$';
const TopicOrWildcard = Type.Union([...TOPICS.map((t) => Type.Literal(t)), Type.Literal('*')]);
const OneOrMany = <T extends TSchema>(item: T) =>
  Type.Optional(Type.Union([item, Type.Array(item, { minItems: 1 })]));
const GRPC_ADDRESS = '^[A-Za-z0-9.-]+:[0-9]{1,5}$';
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
        log_level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info' },
        ),
        shutdown_timeout: Duration('30s'),
      },
      { additionalProperties: false, default: {} },
    ),
    redis: Type.Object(
      {
        url: Type.String({ pattern: '^rediss?://', default: 'redis://localhost:6379' }),
        db: Type.Integer({ minimum: 0, maximum: 15, default: 0 }),
        channels: Type.Array(Type.String({ pattern: `^(${topicPrefixes}):.+$` }), {
          minItems: 1,
          default: [
            'market_data:*',
            'orderbook:*',
            'trades:*',
            'orders:*',
            'positions:*',
            'account:*',
            'strategies:*',
          ],
        }),
        health_check_interval: Duration('1s'),
        health_check_timeout: Duration('2s'),
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
        jwt: Type.Object(
          {
            algorithms: Type.Array(Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a))), {
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
          limit: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 5000 }),
        }),
        risk_manager: Backend(GRPC_ADDRESS, { account_id: Type.String({ default: '' }) }),
        account_monitor: Backend(HTTP_URL, {}),
        strategy_engine: Backend(HTTP_URL, {}),
        market_data: Type.Optional(
          Type.Object(
            { interval: Duration('30s'), timeout: Duration('5s'), breaker: Breaker() },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    ops: Type.Object(
      {
        allowed_cidrs: Type.Array(Type.String({ pattern: CIDR_PATTERN }), { default: [] }),
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
        terminal_order_retention: Duration('10m'),
        max_message_size: Size('1MiB'),
        max_symbols: Type.Integer({ minimum: 1, default: 1000 }),
        symbol_idle_ttl: Duration('1h'),
        max_record_size: Size('16KiB'),
        max_entries: Type.Integer({ minimum: 1, default: 10000 }),
        max_state_size: Size('32MiB'),
        orderbook_pending_max_size: Type.Union(
          [Type.Integer({ minimum: 0 }), Type.String({ pattern: SIZE_PATTERN })],
          {
            default: '16MiB',
            description:
              'most bytes of order books waiting to be ingested (the latest per channel); 0: each book inline',
          },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);
export type ConfigFile = Static<typeof ConfigFileSchema>;

/** The validated configuration with durations in milliseconds and sizes in bytes. */
export interface RateLimitConfig {
  max: number;
  /** ms */
  window: number;
}

export interface BreakerConfig {
  error_threshold_percentage: number;
  volume_threshold: number;
  /** ms */
  reset_timeout: number;
  /** ms */
  rolling_window: number;
}

/** One polled backend; durations in ms. `url` is absent for market_data (its truth is in Redis). */
export interface BackendConfig {
  url?: string;
  interval: number;
  timeout: number;
  api_key?: string;
  breaker: BreakerConfig;
  /** order_execution: the `limit` of GetOrders. */
  limit?: number;
  /** risk_manager: the account of GetRiskMetrics. */
  account_id?: string;
}

export interface Config {
  server: { host: string; port: number; log_level: string; shutdown_timeout: number };
  redis: {
    url: string;
    db: number;
    channels: string[];
    /** ms between PINGs on the reader connection. */
    health_check_interval: number;
    /** ms without a PING reply before Redis counts as stalled. */
    health_check_timeout: number;
  };
  websocket: {
    ping_interval: number;
    read_timeout: number;
    max_message_size: number;
    max_buffered: number;
    max_lag: number;
    allowed_origins: string[];
    require_origin: boolean;
    max_subscriptions: number;
    max_clients: number;
    max_clients_per_user: number;
    rate_limit: { messages_per_second: number; burst: number; max_violations: number; window: number };
    connect_rate_limit: RateLimitConfig;
  };
  http: { rate_limit: RateLimitConfig };
  auth: {
    enabled: boolean;
    default_role: string;
    topic_roles: Record<string, string[]>;
    jwt: {
      algorithms: JwtAlgorithm[];
      /** Shared secrets for HS* tokens, from `secret` and the files of `secret_file`. */
      secrets: string[];
      /** PEM public keys for RS*, PS* and ES* tokens, from `public_key` and `public_key_file`. */
      public_keys: string[];
      issuer?: string;
      audience?: string;
      /** ms */
      clock_tolerance: number;
    };
  };
  ops: { allowed_cidrs: string[] };
  backend_services: Partial<Record<SourceName, BackendConfig>>;
  broadcast: { tui_interval: number; web_interval: number; send_phases: number };
  ingest: {
    orderbook_depth: number;
    trades_kept: number;
    terminal_order_retention: number;
    max_message_size: number;
    max_symbols: number;
    /** ms */
    symbol_idle_ttl: number;
    max_record_size: number;
    max_entries: number;
    max_state_size: number;
    /** Bytes; 0: books are ingested inline, as they are read. */
    orderbook_pending_max_size: number;
  };
}

const checker = TypeCompiler.Compile(ConfigFileSchema);

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
export function parseDuration(text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$/.exec(text);
  if (!match) throw new ConfigError(`not a duration: ${JSON.stringify(text)}`);
  return Math.round(Number(match[1]) * DURATION_UNITS[match[2]]);
}

const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };
export function parseSize(value: number | string): number {
  if (typeof value === 'number') return value;
  const match = /^([0-9]+) ?(B|KiB|MiB|GiB)$/.exec(value);
  if (!match) throw new ConfigError(`not a size: ${JSON.stringify(value)}`);
  return Number(match[1]) * SIZE_UNITS[match[2]];
}

/** Fills defaults in place, walking the schema so nested sections get theirs too. */
function applyDefaults(schema: TSchema, value: unknown): unknown {
  if (value === undefined && 'default' in schema) value = structuredClone(schema.default);
  if (schema.type === 'object' && value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    for (const [key, child] of Object.entries((schema.properties ?? {}) as Record<string, TSchema>)) {
      const filled = applyDefaults(child, record[key]);
      if (filled !== undefined) record[key] = filled;
    }
  }
  return value;
}

function describeExpected(schema: TSchema): string {
  if (schema.pattern === DURATION_PATTERN) return 'a duration like 100ms, 30s, 10m or 2h';
  if (schema.anyOf) {
    const literals = (schema.anyOf as TSchema[]).filter((s) => 'const' in s).map((s) => s.const);
    if (literals.length === schema.anyOf.length) return `one of ${literals.join(', ')}`;
    if (schema.description) return schema.description;
  }
  if (schema.type === 'integer' || schema.type === 'number') {
    const range =
      schema.minimum !== undefined && schema.maximum !== undefined
        ? ` from ${schema.minimum} to ${schema.maximum}`
        : schema.minimum !== undefined
          ? ` of at least ${schema.minimum}`
          : '';
    return `${schema.type === 'integer' ? 'an integer' : 'a number'}${range}`;
  }
  if (schema.type === 'string' && schema.pattern) return `a string matching ${schema.pattern}`;
  if (schema.type === 'array')
    return `a list${schema.minItems ? ` of at least ${schema.minItems} item(s)` : ''}`;
  if (schema.type === 'object') return 'a section (mapping of keys)';
  return `a ${schema.type}`;
}

function schemaAt(path: string[]): TSchema | undefined {
  let schema: TSchema | undefined = ConfigFileSchema;
  for (const key of path) {
    if (!schema) return undefined;
    if (schema.type === 'object') {
      // A record (auth.topic_roles) has one schema for every key.
      const record = schema.patternProperties as Record<string, TSchema> | undefined;
      schema =
        (schema.properties as Record<string, TSchema> | undefined)?.[key] ?? Object.values(record ?? {})[0];
    } else if (schema.type === 'array') schema = schema.items as TSchema;
    else return undefined;
  }
  return schema;
}

function valueAt(root: unknown, path: string[]): unknown {
  let value = root;
  for (const key of path) value = (value as Record<string, unknown> | undefined)?.[key];
  return value;
}

function firstError(document: unknown, sources: Map<string, string>): ConfigError | undefined {
  const error = checker.Errors(document).First();
  if (!error) return undefined;
  const path = error.path.split('/').filter(Boolean);
  const schema = schemaAt(path);
  // An unknown key shows as an error on the key itself, for which the schema has no entry.
  const keyPath = path.filter((segment) => !/^[0-9]+$/.test(segment)).join('.');
  const source = sources.get(keyPath) ?? sources.get(path.slice(0, 2).join('.'));
  const from = source ? ` (from ${source})` : '';
  if (!schema) return new ConfigError(`config: unknown key ${keyPath || '(root)'}${from}`);
  const shown = path.length === 0 ? 'the document' : path.join('.');
  const got = JSON.stringify(valueAt(document, path)) ?? 'nothing';
  return new ConfigError(`config: ${shown} must be ${describeExpected(schema)}, got ${got}${from}`);
}

/**
 * Parses an environment override as a YAML scalar or flow list, so `8090`, `true`, `[a, b]` keep their types;
 * where the key takes a string, a scalar is kept as written (a secret like `0123…` must not become a number).
 */
function parseEnvValue(name: string, text: string, schema: TSchema | undefined): unknown {
  const takesString =
    schema?.type === 'string' || (schema?.anyOf as TSchema[] | undefined)?.some((s) => s.type === 'string');
  if (takesString && !/^\s*[[{]/.test(text)) return text;
  try {
    return parseYaml(text);
  } catch {
    throw new ConfigError(`config: ${name} is not a valid value: ${JSON.stringify(text)}`);
  }
}

export interface LoadOptions {
  /** Path of the YAML file; the file must exist. */
  path: string;
  /** Environment to read DASHBOARD_<SECTION>__<KEY> overrides from. */
  env?: NodeJS.ProcessEnv;
}

/** Reads, overrides, validates and normalizes the configuration. Throws ConfigError with a one-line message. */
export function loadConfig({ path, env = {} }: LoadOptions): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`config: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`);
  }
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    const firstLine = String((error as Error).message).split('\n')[0];
    throw new ConfigError(`config: ${path} is not valid YAML: ${firstLine}`);
  }
  if (typeof document !== 'object' || Array.isArray(document)) {
    throw new ConfigError(`config: ${path} must hold a mapping of sections, got ${JSON.stringify(document)}`);
  }
  return configFromDocument(document as Record<string, unknown>, env, path, dirname(resolve(path)));
}

function list(value: string | string[] | undefined): string[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

function rateLimit(value: { max: number; window: string }): RateLimitConfig {
  return { max: value.max, window: parseDuration(value.window) };
}

/** Reads secret or key files (relative paths from the config file's folder); a missing file names its key. */
function readKeyFiles(key: string, value: string | string[] | undefined, baseDir: string): string[] {
  return list(value).map((path) => {
    const full = resolve(baseDir, path);
    let text: string;
    try {
      text = readFileSync(full, 'utf8').trim();
    } catch (error) {
      throw new ConfigError(
        `config: ${key}: cannot read ${full}: ${(error as NodeJS.ErrnoException).code ?? error}`,
      );
    }
    if (text === '') throw new ConfigError(`config: ${key}: ${full} is empty`);
    return text;
  });
}

/** Checks that the keys, algorithms and roles of `auth` fit together. */
function checkAuth(config: Config, from: (key: string) => string): void {
  const { auth } = config;
  if (!(auth.default_role in auth.topic_roles)) {
    throw new ConfigError(
      `config: auth.default_role ${JSON.stringify(auth.default_role)} is not a role of auth.topic_roles (${Object.keys(auth.topic_roles).join(', ')})${from('auth.default_role')}`,
    );
  }
  if (!auth.enabled) return;
  const { algorithms, secrets, public_keys } = auth.jwt;
  const symmetric = algorithms.some((a) => a.startsWith('HS'));
  const asymmetric = algorithms.some((a) => !a.startsWith('HS'));
  if (symmetric && secrets.length === 0) {
    throw new ConfigError(
      `config: auth.jwt.algorithms has ${algorithms.filter((a) => a.startsWith('HS')).join(', ')} but neither auth.jwt.secret nor auth.jwt.secret_file is set`,
    );
  }
  if (asymmetric && public_keys.length === 0) {
    throw new ConfigError(
      `config: auth.jwt.algorithms has ${algorithms.filter((a) => !a.startsWith('HS')).join(', ')} but neither auth.jwt.public_key nor auth.jwt.public_key_file is set`,
    );
  }
  if (!symmetric && secrets.length > 0) {
    throw new ConfigError(
      'config: auth.jwt.secret is set but auth.jwt.algorithms has no HS* algorithm to use it',
    );
  }
  if (!asymmetric && public_keys.length > 0) {
    throw new ConfigError(
      'config: auth.jwt.public_key is set but auth.jwt.algorithms has no RS*, PS* or ES* algorithm to use it',
    );
  }
  for (const secret of secrets) {
    if (Buffer.byteLength(secret) < 32) {
      throw new ConfigError('config: auth.jwt.secret must be at least 32 bytes (256 bits) for HS256');
    }
  }
}

export function configFromDocument(
  document: Record<string, unknown>,
  env: NodeJS.ProcessEnv = {},
  origin = 'the config file',
  baseDir = process.cwd(),
): Config {
  const sources = new Map<string, string>();
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith('DASHBOARD_') || !name.includes('__') || raw === undefined) continue;
    const path = name
      .slice('DASHBOARD_'.length)
      .split('__')
      .map((part) => part.toLowerCase());
    if (path.some((part) => part === '')) throw new ConfigError(`config: ${name} does not name a key`);
    let target = document;
    for (const section of path.slice(0, -1)) {
      const next = target[section];
      if (next === undefined || next === null) target[section] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) {
        throw new ConfigError(`config: ${name} sets a key inside ${section}, which is not a section`);
      }
      target = target[section] as Record<string, unknown>;
    }
    target[path.at(-1)!] = parseEnvValue(name, raw, schemaAt(path));
    sources.set(path.join('.'), name);
  }
  for (const [key, value] of Object.entries(document)) {
    if (value === null)
      throw new ConfigError(`config: ${key} is empty in ${origin}; remove it or give it keys`);
  }
  applyDefaults(ConfigFileSchema, document);
  const error = firstError(document, sources);
  if (error) throw error;
  const file = document as ConfigFile;
  const config: Config = {
    server: { ...file.server, shutdown_timeout: parseDuration(file.server.shutdown_timeout) },
    redis: {
      ...file.redis,
      health_check_interval: parseDuration(file.redis.health_check_interval),
      health_check_timeout: parseDuration(file.redis.health_check_timeout),
    },
    websocket: {
      ...file.websocket,
      ping_interval: parseDuration(file.websocket.ping_interval),
      read_timeout: parseDuration(file.websocket.read_timeout),
      max_message_size: parseSize(file.websocket.max_message_size),
      max_buffered: parseSize(file.websocket.max_buffered),
      max_lag: parseDuration(file.websocket.max_lag),
      rate_limit: { ...file.websocket.rate_limit, window: parseDuration(file.websocket.rate_limit.window) },
      connect_rate_limit: rateLimit(file.websocket.connect_rate_limit),
    },
    http: { rate_limit: rateLimit(file.http.rate_limit) },
    auth: {
      enabled: file.auth.enabled,
      default_role: file.auth.default_role,
      topic_roles: file.auth.topic_roles,
      jwt: {
        algorithms: file.auth.jwt.algorithms as JwtAlgorithm[],
        secrets: [
          ...list(file.auth.jwt.secret),
          ...readKeyFiles('auth.jwt.secret_file', file.auth.jwt.secret_file, baseDir),
        ],
        public_keys: [
          ...list(file.auth.jwt.public_key),
          ...readKeyFiles('auth.jwt.public_key_file', file.auth.jwt.public_key_file, baseDir),
        ],
        issuer: file.auth.jwt.issuer,
        audience: file.auth.jwt.audience,
        clock_tolerance: parseDuration(file.auth.jwt.clock_tolerance),
      },
    },
    ops: { allowed_cidrs: file.ops.allowed_cidrs },
    backend_services: Object.fromEntries(
      Object.entries(file.backend_services)
        .filter(([, backend]) => backend !== undefined)
        .map(([name, backend]) => [
          name,
          {
            ...backend,
            interval: parseDuration(backend.interval),
            timeout: parseDuration(backend.timeout),
            breaker: {
              ...backend.breaker,
              reset_timeout: parseDuration(backend.breaker.reset_timeout),
              rolling_window: parseDuration(backend.breaker.rolling_window),
            },
          },
        ]),
    ),
    broadcast: {
      tui_interval: parseDuration(file.broadcast.tui_interval),
      web_interval: parseDuration(file.broadcast.web_interval),
      send_phases: file.broadcast.send_phases,
    },
    ingest: {
      orderbook_depth: file.ingest.orderbook_depth,
      trades_kept: file.ingest.trades_kept,
      terminal_order_retention: parseDuration(file.ingest.terminal_order_retention),
      max_message_size: parseSize(file.ingest.max_message_size),
      max_symbols: file.ingest.max_symbols,
      symbol_idle_ttl: parseDuration(file.ingest.symbol_idle_ttl),
      max_record_size: parseSize(file.ingest.max_record_size),
      max_entries: file.ingest.max_entries,
      max_state_size: parseSize(file.ingest.max_state_size),
      orderbook_pending_max_size: parseSize(file.ingest.orderbook_pending_max_size),
    },
  };
  const from = (key: string) => (sources.has(key) ? ` (from ${sources.get(key)})` : '');
  for (const [key, ms] of [
    ['broadcast.tui_interval', config.broadcast.tui_interval],
    ['broadcast.web_interval', config.broadcast.web_interval],
    ['websocket.ping_interval', config.websocket.ping_interval],
    ['redis.health_check_interval', config.redis.health_check_interval],
    ['redis.health_check_timeout', config.redis.health_check_timeout],
  ] as const) {
    if (ms < 10) throw new ConfigError(`config: ${key} must be at least 10ms, got ${ms}ms${from(key)}`);
  }
  const { send_phases, tui_interval, web_interval } = config.broadcast;
  if (send_phases > Math.min(tui_interval, web_interval)) {
    throw new ConfigError(
      `config: broadcast.send_phases must leave each phase at least 1ms of the shortest interval (${Math.min(tui_interval, web_interval)}ms), got ${send_phases}${from('broadcast.send_phases')}`,
    );
  }
  if (config.websocket.read_timeout <= config.websocket.ping_interval) {
    const source = from('websocket.read_timeout') || from('websocket.ping_interval');
    throw new ConfigError(
      `config: websocket.read_timeout must be longer than websocket.ping_interval, got ${config.websocket.read_timeout}ms <= ${config.websocket.ping_interval}ms${source}`,
    );
  }
  const { orderbook_pending_max_size: pending, max_message_size } = config.ingest;
  if (pending > 0 && pending < max_message_size) {
    throw new ConfigError(
      `config: ingest.orderbook_pending_max_size must be 0 or at least ingest.max_message_size (${max_message_size} B), got ${pending} B${from('ingest.orderbook_pending_max_size')}`,
    );
  }
  checkAuth(config, from);
  for (const [name, backend] of Object.entries(config.backend_services)) {
    if (backend.timeout >= backend.interval) {
      throw new ConfigError(
        `config: backend_services.${name}.timeout must be shorter than its interval, got ${backend.timeout}ms >= ${backend.interval}ms`,
      );
    }
  }
  const badCidr = AddressAllowlist.firstInvalid(config.ops.allowed_cidrs);
  if (badCidr !== undefined) {
    throw new ConfigError(
      `config: ops.allowed_cidrs has ${JSON.stringify(badCidr)}, which is not an IPv4 or IPv6 CIDR${from('ops.allowed_cidrs')}`,
    );
  }
  return config;
}
