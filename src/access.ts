/** Access rules with no Fastify in them: who a token names, which topics a role sees, origins, addresses, rates. */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { TOPICS, type Topic } from './topics.ts';

/** The user a verified token names. */
export interface Principal {
  userId: string;
  role: string;
  /** When the token expires, in ms since the epoch; undefined for a token without `exp`. */
  expiresAt: number | undefined;
  /** Admitted without a token (auth.enabled false, or auth.anonymous): may read, never act (trading actions). */
  tokenless?: true;
}

/** Whom a connection acts as when auth.enabled is false: a development setup with every topic open. */
export const ANONYMOUS_PRINCIPAL: Principal = {
  userId: 'anonymous',
  role: '*',
  expiresAt: undefined,
  tokenless: true,
};

/** A token whose claims do not name a user. */
export class ClaimsError extends Error {}

/**
 * Reads the claims of both issuers: the login service (`userId`, `email`) and the API gateway (`user_id`,
 * `role`); `sub` as a last resort. A token without a role gets `defaultRole`.
 */
export function principalFromClaims(claims: Record<string, unknown>, defaultRole: string): Principal {
  const id = claims.userId ?? claims.user_id ?? claims.sub;
  if ((typeof id !== 'string' && typeof id !== 'number') || id === '') {
    throw new ClaimsError('token names no user (userId, user_id or sub)');
  }
  const role = typeof claims.role === 'string' && claims.role !== '' ? claims.role : defaultRole;
  const expiresAt = typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
  return { userId: String(id), role, expiresAt };
}

/** Which topics each role may subscribe to; `*` is every topic. A role not listed sees nothing. */
export class TopicPermissions {
  private readonly allowed = new Map<string, ReadonlySet<Topic>>();

  constructor(topicRoles: Record<string, string[]>) {
    for (const [role, topics] of Object.entries(topicRoles)) {
      this.allowed.set(role, new Set(topics.includes('*') ? TOPICS : (topics as Topic[])));
    }
  }

  /** Whether `role` may subscribe to `subscription` (a topic, or a symbol-scoped `topic:SYMBOL`). */
  allows(role: string, subscription: string): boolean {
    const colon = subscription.indexOf(':');
    const topic = (colon === -1 ? subscription : subscription.slice(0, colon)) as Topic;
    return this.allowed.get(role)?.has(topic) ?? false;
  }
}

/**
 * Matches browser origins against an allowlist of exact origins and `https://*.example.com` wildcards (any
 * subdomain depth, never the bare domain). An empty list allows no origin.
 */
export class OriginAllowlist {
  private readonly exact = new Set<string>();
  private readonly wildcards: { scheme: string; suffix: string; port: string }[] = [];

  constructor(origins: string[]) {
    for (const origin of origins) {
      const match = /^(https?):\/\/\*\.([^:/]+)(?::(\d+))?$/.exec(origin);
      if (match)
        this.wildcards.push({ scheme: match[1], suffix: `.${match[2].toLowerCase()}`, port: match[3] ?? '' });
      else this.exact.add(origin.toLowerCase());
    }
  }

  allows(origin: string): boolean {
    const normalized = origin.toLowerCase();
    if (this.exact.has(normalized)) return true;
    let url: URL;
    try {
      url = new URL(normalized);
    } catch {
      return false;
    }
    if (url.origin !== normalized) return false;
    const scheme = url.protocol.slice(0, -1);
    return this.wildcards.some(
      (w) =>
        w.scheme === scheme &&
        w.port === url.port &&
        url.hostname.endsWith(w.suffix) &&
        url.hostname.length > w.suffix.length,
    );
  }
}

/**
 * Configured CIDR ranges, plus loopback unless `loopback` is false: loopback is always in for the operations
 * routes, and in auth.anonymous only when listed.
 */
export class AddressAllowlist {
  private readonly list = new BlockList();

  constructor(cidrs: string[], { loopback = true }: { loopback?: boolean } = {}) {
    if (loopback) {
      this.list.addSubnet('127.0.0.0', 8, 'ipv4');
      this.list.addAddress('::1', 'ipv6');
    }
    for (const cidr of cidrs) {
      const [address, prefix] = cidr.split('/');
      this.list.addSubnet(address, Number(prefix), isIPv4(address) ? 'ipv4' : 'ipv6');
    }
  }

  allows(address: string): boolean {
    // An IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.list.check(mapped[1], 'ipv4');
    if (isIPv4(address)) return this.list.check(address, 'ipv4');
    if (isIPv6(address)) return this.list.check(address, 'ipv6');
    return false;
  }
}

/** A token bucket: `rate` tokens a second, at most `burst` saved up. One per socket, so no client shares another's. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly rate: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(rate: number, burst: number, now: () => number = performance.now.bind(performance)) {
    this.rate = rate;
    this.burst = burst;
    this.now = now;
    this.tokens = burst;
    this.last = now();
  }

  /** Takes a token if there is one. */
  take(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Where a WebSocket upgrade (or an HTTP request) carries its token. */
export type TokenSource = 'header' | 'subprotocol' | 'query';

/**
 * Finds the token of a request: `Authorization: Bearer <jwt>`, `Sec-WebSocket-Protocol: bearer, <jwt>`
 * (browsers cannot set headers on a WebSocket), or `?token=<jwt>`.
 */
export function extractToken(
  headers: Record<string, string | string[] | undefined>,
  url: string,
): { token: string; source: TokenSource } | undefined {
  const authorization = headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match) return { token: match[1], source: 'header' };
  }
  const protocols = headers['sec-websocket-protocol'];
  if (typeof protocols === 'string') {
    const offered = protocols.split(',').map((p) => p.trim());
    const index = offered.indexOf('bearer');
    if (index !== -1 && offered[index + 1]) return { token: offered[index + 1], source: 'subprotocol' };
  }
  const query = url.indexOf('?');
  if (query !== -1) {
    const token = new URLSearchParams(url.slice(query + 1)).get('token');
    if (token) return { token, source: 'query' };
  }
  return undefined;
}

/**
 * Whether a request tried to send a credential, usable or not: any `Authorization` header, a `bearer`
 * subprotocol offered, a `token` query parameter (even empty). Such a request is never admitted as
 * auth.anonymous: it gets the answer its credential gets (a client whose token went missing must learn it).
 */
export function offersCredential(
  headers: Record<string, string | string[] | undefined>,
  url: string,
): boolean {
  if (headers.authorization !== undefined) return true;
  const protocols = headers['sec-websocket-protocol'];
  if (typeof protocols === 'string' && protocols.split(',').some((p) => p.trim() === 'bearer')) return true;
  const query = url.indexOf('?');
  return query !== -1 && new URLSearchParams(url.slice(query + 1)).has('token');
}

/**
 * A URL, or a comma-separated list of them, with the credentials of each (`//user:password@`) masked up to the last
 * `@` before the host, whatever they hold (a slash, a space, an `@`): for log lines and config errors.
 */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\/\/[^,"]*@/g, '//***@');
}

/**
 * The URL with the value of every query parameter that names a token masked, for logs and error bodies.
 * A parameter is a token when its name, decoded as `extractToken`'s parser (URLSearchParams) decodes it, is
 * `token` in any case: `%74oken`, `t%6Fken`, a repeated `token`, a query opened by `??` all qualify. The
 * whole value up to the next `&` is masked, whatever it encodes (a `#` or `;` does not end it for
 * URLSearchParams either); the name keeps its spelling, so an operator sees how the token was sent. A
 * `;token=` (no parser here splits on `;`, so it is no token to the hub) is masked too, up to the next `;`:
 * a client's token must not reach the log even when it is sent in a way the hub ignores.
 */
export function redactTokenInUrl(url: string): string {
  const query = url.indexOf('?');
  if (query === -1) return url;
  const pairs = url.slice(query + 1).split('&');
  let changed = false;
  for (const [index, pair] of pairs.entries()) {
    // URLSearchParams drops one leading `?` of its input, so `/ws??token=` carries a token too.
    const masked = maskedParameter(index === 0 && pair.startsWith('?') ? pair.slice(1) : pair);
    if (masked !== undefined) {
      pairs[index] = `${pair.startsWith('?') && index === 0 ? '?' : ''}${masked}`;
      changed = true;
    } else if (pair.includes(';')) {
      const parts = pair.split(';');
      for (const [part, text] of parts.entries()) {
        const maskedPart = part === 0 ? undefined : maskedParameter(text);
        if (maskedPart === undefined) continue;
        parts[part] = maskedPart;
        changed = true;
      }
      pairs[index] = parts.join(';');
    }
  }
  return changed ? `${url.slice(0, query + 1)}${pairs.join('&')}` : url;
}

/** `name=***` if `parameter` (`name=value`) names a token, else undefined. */
function maskedParameter(parameter: string): string | undefined {
  const equals = parameter.indexOf('=');
  if (equals === -1) return undefined;
  const name = parameter.slice(0, equals);
  return queryNameOf(name).toLowerCase() === 'token' ? `${name}=***` : undefined;
}

/** A query parameter name decoded exactly as URLSearchParams decodes it (`+` is a space, `%XX` a byte). */
function queryNameOf(raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  // `raw` holds no `=` or `&` (the caller split on them), so this is one parameter with an empty value.
  return [...new URLSearchParams(`${raw}=`).keys()][0] ?? raw;
}
