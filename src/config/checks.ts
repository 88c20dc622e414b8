/**
 * Checks across keys, run on the decoded config: what one key's schema cannot say (an interval against another,
 * a key against the algorithms, a CIDR's prefix length against its address family).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { redactUrlCredentials } from '../access.ts';
import { ConfigError, sourceNote } from './errors.ts';
import type { Config } from './schema.ts';

/** The first entry that is not an IPv4 CIDR (prefix 0–32) or an IPv6 CIDR (0–128). */
function firstInvalidCidr(cidrs: string[]): string | undefined {
  return cidrs.find((cidr) => {
    const [address, prefix] = cidr.split('/');
    const bits = Number(prefix);
    if (isIPv4(address)) return !(bits >= 0 && bits <= 32);
    if (isIPv6(address)) return !(bits >= 0 && bits <= 128);
    return true;
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
  const { anonymous } = auth;
  if (anonymous.enabled && anonymous.allowed_cidrs.length === 0) {
    throw new ConfigError(
      `config: auth.anonymous.enabled is true but auth.anonymous.allowed_cidrs is empty: list the addresses that may connect without a token${from('auth.anonymous.allowed_cidrs') || from('auth.anonymous.enabled')}`,
    );
  }
  if (anonymous.enabled && !Object.hasOwn(auth.topic_roles, anonymous.role)) {
    throw new ConfigError(
      `config: auth.anonymous.role ${JSON.stringify(anonymous.role)} is not a role of auth.topic_roles (${Object.keys(auth.topic_roles).join(', ')})${from('auth.anonymous.role')}`,
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

/**
 * Throws a ConfigError for the first cross-key problem. `sources` maps keys to the environment variables that
 * set them, so a message can name the variable.
 */
export function checkConfig(config: Config, sources: ReadonlyMap<string, string>): void {
  const from = (key: string) => sourceNote(sources, key);
  for (const [key, ms] of [
    ['broadcast.tui_interval', config.broadcast.tui_interval],
    ['broadcast.web_interval', config.broadcast.web_interval],
    ['websocket.ping_interval', config.websocket.ping_interval],
    ['redis.health_check_interval', config.redis.health_check_interval],
    ['redis.health_check_timeout', config.redis.health_check_timeout],
    ['nats.ping_interval', config.nats.ping_interval],
    ['history.flush_interval', config.history.flush_interval],
    ['history.account_interval', config.history.account_interval],
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
  for (const server of config.nats.url?.split(',') ?? []) {
    if (!URL.canParse(server) || new URL(server).hostname === '') {
      throw new ConfigError(
        `config: nats.url has ${JSON.stringify(redactUrlCredentials(server))}, which is not a server URL like nats://host:4222 (several: separated by commas)${from('nats.url')}`,
      );
    }
  }
  if (config.history.retention < 3_600_000) {
    throw new ConfigError(
      `config: history.retention must be at least 1h, got ${config.history.retention}ms${from('history.retention')}`,
    );
  }
  // One subscription per subject: a subject named twice would feed one of the two topics only.
  const seen = new Map<string, string>();
  for (const [name, subject] of Object.entries(config.nats.subjects)) {
    const other = seen.get(subject);
    if (other !== undefined) {
      throw new ConfigError(
        `config: nats.subjects.${other} and nats.subjects.${name} are both ${JSON.stringify(subject)}: each topic needs a subject of its own${from(`nats.subjects.${name}`) || from(`nats.subjects.${other}`)}`,
      );
    }
    seen.set(subject, name);
  }
  const { lease } = config.leader;
  if (lease < 300 || lease > 600_000) {
    throw new ConfigError(
      `config: leader.lease must be from 300ms to 10m, got ${lease}ms${from('leader.lease')}`,
    );
  }
  if (config.actions.enabled && !config.backend_services.order_execution) {
    throw new ConfigError(
      `config: actions.enabled is true but backend_services.order_execution is not set: trading actions go to order-execution${from('actions.enabled')}`,
    );
  }
  for (const [name, backend] of Object.entries(config.backend_services)) {
    if (backend.timeout >= backend.interval) {
      throw new ConfigError(
        `config: backend_services.${name}.timeout must be shorter than its interval, got ${backend.timeout}ms >= ${backend.interval}ms`,
      );
    }
  }
  for (const [key, cidrs] of [
    ['ops.allowed_cidrs', config.ops.allowed_cidrs],
    ['auth.anonymous.allowed_cidrs', config.auth.anonymous.allowed_cidrs],
    ['server.trust_proxy', config.server.trust_proxy],
  ] as const) {
    const badCidr = firstInvalidCidr(cidrs);
    if (badCidr !== undefined) {
      throw new ConfigError(
        `config: ${key} has ${JSON.stringify(badCidr)}, which is not an IPv4 or IPv6 CIDR${from(key)}`,
      );
    }
  }
  // Trusting every peer's X-Forwarded-For would let any client choose its address (Fastify's `trustProxy: true`).
  const everyone = config.server.trust_proxy.find((cidr) => Number(cidr.split('/')[1]) === 0);
  if (everyone !== undefined) {
    throw new ConfigError(
      `config: server.trust_proxy has ${JSON.stringify(everyone)}, which trusts every address: list your proxies' addresses${from('server.trust_proxy')}`,
    );
  }
}
