import { type Principal, TokenBucket } from '../access.ts';
import type { Format } from '../codec.ts';
import { CloseCode } from './close-codes.ts';
import type { Group } from './groups.ts';
import type { WireProtocol } from './protocol.ts';
import { count, type ErrorReport, type HubStats } from './stats.ts';

export const CLIENT_TYPES = ['tui', 'web'] as const;
export type ClientType = (typeof CLIENT_TYPES)[number];

/** What the hub needs of a WebSocket; `ws`'s WebSocket has all of it. */
export interface ClientSocket {
  readonly readyState: number;
  /** Bytes queued in user space that the kernel has not taken yet. */
  readonly bufferedAmount: number;
  send(data: Buffer, options: { binary: boolean }): void;
  ping(): void;
  terminate(): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): unknown;
  on(event: 'ping' | 'pong' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (error: Error & { code?: string }) => void): unknown;
}

export const OPEN = 1;

/** One connected client. */
export class HubClient {
  readonly id: number;
  /** Its cadence; set again only when its first message chooses a protocol (see `speak`). */
  type: ClientType;
  /** How its frames are built and its messages read; clients sharing `protocol.key` share frames. */
  protocol: WireProtocol;
  format: Format;
  readonly socket: ClientSocket;
  /** Built once per protocol: the send loop runs for every client at every tick. */
  sendOptions: { readonly binary: boolean };
  /**
   * The upgrade named no protocol: the first message may still choose one (protocols/index.ts). Cleared by that
   * first message, whatever it is. `typeGiven`: the upgrade said `?type=` (else `type` is the default).
   */
  choosing: false | { typeGiven: boolean } = false;
  subscriptions = new Set<string>();
  /** The sequence of the view the client holds: the `sequence` of the last update it was sent. */
  sequence = 0;
  /** The view did not change between `sequence` and `scanned`: the next diff starts from here. */
  scanned = 0;
  group: Group | undefined;
  lastSeenAt: number;
  readonly connectedAt: number;
  principal: Principal;
  readonly bucket: TokenBucket;
  /** Rate-limit violations in the current window, and when that window started. */
  violations = 0;
  violationWindowStart = 0;
  expiryTimer: NodeJS.Timeout | undefined;
  /** Since when the client has been skipped for a full buffer, or undefined while it keeps up. */
  behindSince: number | undefined;
  /** When the last ping went out and the last pong came back; whether anything was sent since that ping. */
  pingSentAt = 0;
  pongAt = 0;
  sentSincePing = false;
  /** A snapshot (subscribe, resync) held back while the socket buffer was over websocket.max_buffered. */
  pendingSnapshot = false;

  constructor(
    id: number,
    type: ClientType,
    protocol: WireProtocol,
    socket: ClientSocket,
    principal: Principal,
    bucket: TokenBucket,
    now: number,
  ) {
    this.id = id;
    this.type = type;
    this.protocol = protocol;
    this.format = protocol.format;
    this.socket = socket;
    this.sendOptions = protocol.sendOptions;
    this.principal = principal;
    this.bucket = bucket;
    this.lastSeenAt = now;
    this.connectedAt = now;
  }

  /** Switches the client to another protocol (and cadence); the caller regroups it. */
  speak(protocol: WireProtocol, type: ClientType = this.type): void {
    this.protocol = protocol;
    this.format = protocol.format;
    this.sendOptions = protocol.sendOptions;
    this.type = type;
  }
}

export interface SessionOptions {
  /** How often clients are pinged, in ms. */
  pingInterval: number;
  /** A client silent for longer than this (no pong, no message), in ms, is terminated. */
  readTimeout: number;
  /** A client not answering a ping while data flows for longer, in ms, is closed with 4008. */
  maxLag: number;
  rateLimit: { messagesPerSecond: number; burst: number };
  now: () => number;
}

/** What the sessions tell the rest of the hub. */
export interface SessionEvents {
  /** A frame from a client still connected. */
  message(client: HubClient, data: Buffer, binary: boolean): void;
  /** A client is gone (closed, terminated, or its socket closed): it leaves its group and pending work. */
  left(client: HubClient): void;
  /** A WebSocket ping went to the client: its protocol may send a ping message of its own. */
  pinged(client: HubClient, at: number): void;
}

/** Connection lifecycle: connect and disconnect, closing with a code, token expiry, heartbeat and liveness. */
export class Sessions {
  readonly clients = new Set<HubClient>();
  /** Open sockets per user, for websocket.max_clients_per_user. */
  private readonly perUser = new Map<string, number>();
  private readonly options: SessionOptions;
  private readonly stats: HubStats;
  private readonly errors: ErrorReport;
  private readonly events: SessionEvents;
  private nextId = 1;

  constructor(options: SessionOptions, stats: HubStats, errors: ErrorReport, events: SessionEvents) {
    this.options = options;
    this.stats = stats;
    this.errors = errors;
    this.events = events;
  }

  /** Registers a socket and wires its events. Must be called synchronously in the upgrade handler. */
  connect(socket: ClientSocket, type: ClientType, protocol: WireProtocol, principal: Principal): HubClient {
    const { messagesPerSecond, burst } = this.options.rateLimit;
    const bucket = new TokenBucket(messagesPerSecond, burst);
    const now = this.options.now();
    const client = new HubClient(this.nextId++, type, protocol, socket, principal, bucket, now);
    this.clients.add(client);
    this.perUser.set(principal.userId, this.clientCount(principal.userId) + 1);
    this.scheduleExpiry(client);
    socket.on('message', (data, binary) => this.events.message(client, data, binary));
    socket.on('pong', () => {
      client.lastSeenAt = this.options.now();
      client.pongAt = client.lastSeenAt;
    });
    socket.on('close', () => this.disconnect(client));
    socket.on('error', (error) => this.socketFailed(client, error));
    // `ws` answers pings itself, and terminates a socket with more than maxPendingAutoPongs (60) pongs not yet
    // written (a ping flood, or a peer that pings and stops reading) before emitting the ping: no close frame, no
    // error event. A ping that finds a socket no longer open while the hub still holds it is that termination.
    socket.on('ping', () => {
      if (socket.readyState !== OPEN && this.clients.has(client)) {
        this.socketFailed(
          client,
          Object.assign(new Error('too many pings waiting for their pong; terminated by ws'), {
            code: 'ping_flood',
          }),
        );
      }
    });
    return client;
  }

  disconnect(client: HubClient): void {
    if (!this.clients.delete(client)) return;
    clearTimeout(client.expiryTimer);
    const userId = client.principal.userId;
    const remaining = this.clientCount(userId) - 1;
    if (remaining > 0) this.perUser.set(userId, remaining);
    else this.perUser.delete(userId);
    this.events.left(client);
  }

  /**
   * Closes one client's socket with a code and reason, counting it. A slow consumer (4008) is terminated at once:
   * the close frame reaches it if the kernel still takes data, and its buffers are released now rather than after
   * ws's 30 s wait for a close handshake it will not answer.
   */
  close(client: HubClient, code: number, reason: string): void {
    count(this.stats.disconnects, code);
    client.socket.close(code, reason);
    if (code === CloseCode.SLOW_CONSUMER) client.socket.terminate();
    this.disconnect(client);
  }

  /** close() for a client the hub may no longer be able to write to: whatever the socket throws, it is gone. */
  closeQuietly(client: HubClient, code: number, reason: string): void {
    try {
      this.close(client, code, reason);
    } catch {
      client.socket.terminate();
      this.disconnect(client);
    }
  }

  /** Drops a dead peer without a close frame (counted as `terminated`). */
  terminate(client: HubClient): void {
    count(this.stats.disconnects, 'terminated');
    client.socket.terminate();
    this.disconnect(client);
  }

  /** Closes every client with `code`, e.g. 1001 at shutdown. */
  closeAll(code: number, reason: string): void {
    for (const client of [...this.clients]) this.close(client, code, reason);
  }

  /**
   * A frame `ws` refuses (over websocket.max_message_size, bad opcode or UTF-8) or a socket error: `ws` has already
   * sent its close code (1009, 1002, 1007); the socket goes, and the log says so once per second per kind.
   */
  private socketFailed(client: HubClient, error: Error & { code?: string }): void {
    this.errors.socketFailed(error, { client: client.id, user: client.principal.userId });
    client.socket.terminate();
    this.disconnect(client);
  }

  /** Closes the socket with 4001 when its token expires, unless a fresh token arrives first. */
  scheduleExpiry(client: HubClient): void {
    clearTimeout(client.expiryTimer);
    const expiresAt = client.principal.expiresAt;
    if (expiresAt === undefined) return;
    // setTimeout holds at most ~24.8 days; a token valid longer is checked again then.
    const delay = Math.min(Math.max(0, expiresAt - this.options.now()), 2 ** 31 - 1);
    client.expiryTimer = setTimeout(() => {
      if (this.options.now() >= expiresAt) this.close(client, CloseCode.TOKEN_EXPIRED, 'token_expired');
      else this.scheduleExpiry(client);
    }, delay);
  }

  /** How often the heartbeat must run: often enough for the ping cadence and to notice, within max_lag, a client that stopped reading. */
  get heartbeatEvery(): number {
    return Math.min(this.options.pingInterval, Math.max(10, this.options.maxLag / 4));
  }

  /**
   * Liveness and lag, for every client: silent for longer than the read timeout → terminated; a ping unanswered
   * for longer than max_lag while updates were being sent → 4008, because a client that stopped reading hides
   * megabytes in kernel buffers before its buffered amount grows. Pings go out every ping interval, and every
   * max_lag / 2 to clients that are being sent data.
   */
  heartbeat(): void {
    const now = this.options.now();
    for (const client of [...this.clients]) {
      try {
        this.checkLiveness(client, now);
      } catch (error) {
        this.errors.failed('heartbeat', error, { client: client.id });
      }
    }
  }

  private checkLiveness(client: HubClient, now: number): void {
    const { readTimeout, maxLag, pingInterval } = this.options;
    if (client.lastSeenAt < now - readTimeout) {
      this.terminate(client);
      return;
    }
    const unanswered = client.pingSentAt > client.pongAt;
    if (unanswered) {
      if (client.sentSincePing && now - client.pingSentAt > maxLag) {
        this.close(client, CloseCode.SLOW_CONSUMER, 'slow_consumer');
      }
      return;
    }
    const since = now - client.pingSentAt;
    if (since >= pingInterval || (client.sentSincePing && since >= maxLag / 2)) {
      if (client.socket.readyState !== OPEN) return;
      client.socket.ping();
      client.pingSentAt = now;
      client.sentSincePing = false;
      this.events.pinged(client, now);
    }
  }

  /** Open sockets of one user. */
  clientCount(userId: string): number {
    return this.perUser.get(userId) ?? 0;
  }

  /** Users with at least one open socket. */
  get users(): number {
    return this.perUser.size;
  }

  clientsByType(): Record<ClientType, number> {
    const counts = { tui: 0, web: 0 };
    for (const client of this.clients) counts[client.type]++;
    return counts;
  }

  /** Open sockets by client type, then by protocol name. */
  clientsByProtocol(): Record<ClientType, Record<string, number>> {
    const counts: Record<ClientType, Record<string, number>> = { tui: {}, web: {} };
    for (const client of this.clients) count(counts[client.type], client.protocol.name);
    return counts;
  }

  /** Open sockets by client type, then by format (json, msgpack). */
  clientsByFormat(): Record<ClientType, Record<string, number>> {
    const counts: Record<ClientType, Record<string, number>> = { tui: {}, web: {} };
    for (const client of this.clients) count(counts[client.type], client.format);
    return counts;
  }

  /** The largest socket buffer of any client, in bytes (a gauge for the metrics). */
  maxBufferedAmount(): number {
    let largest = 0;
    for (const client of this.clients) largest = Math.max(largest, client.socket.bufferedAmount);
    return largest;
  }
}
