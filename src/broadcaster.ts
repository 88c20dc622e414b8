import { ANONYMOUS_PRINCIPAL, type Principal, TokenBucket } from './access.ts';
import { encode, type Format, isBinary } from './codec.ts';
import { LogThrottle } from './log-throttle.ts';
import { type Command, ProtocolError, parseClientMessage } from './protocol.ts';
import { type StateStore, TOO_OLD } from './state.ts';
import { buildFilter, type Filter, subscriptionKey } from './topics.ts';

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

const OPEN = 1;

export interface HubLogger {
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface HubOptions {
  /** Broadcast cadence per client type, in ms. */
  intervals: Record<ClientType, number>;
  /**
   * Each interval is cut into this many phases, one timer tick each; a large group's clients are spread over them
   * so that one tick never sends to thousands of sockets at once. 1 sends every group whole once per interval.
   */
  sendPhases?: number;
  /** How often clients are pinged, in ms. */
  pingInterval: number;
  /** A client silent for longer than this (no pong, no message), in ms, is terminated. */
  readTimeout: number;
  logger: HubLogger;
  /** Most subscription names one client may hold. */
  maxSubscriptions: number;
  /** Per-socket message rate: over it a message gets `rate_limited`; more than `maxViolations` in `window` ms closes 4029. */
  rateLimit: { messagesPerSecond: number; burst: number; maxViolations: number; window: number };
  /** Whether a principal may read a subscription; everything when absent. */
  mayRead?: (principal: Principal, subscription: string) => boolean;
  /** A client with more bytes than this waiting in its socket is skipped this tick (conflation). */
  maxBuffered: number;
  /** A client behind (skipped, or not answering a ping while data flows) for longer, in ms, is closed with 4008. */
  maxLag: number;
  /** Verifies a fresh token sent with `{"action":"auth"}`; throws an error with a `code` when it is not valid. */
  verifyToken?: (token: string) => Principal;
  now?: () => number;
}

/** Close codes the hub sends (see docs/protocol.md). 4000–4499: reconnect; 4500–4999: do not. */
export const CloseCode = {
  GOING_AWAY: 1001,
  INTERNAL_ERROR: 1011,
  TOKEN_EXPIRED: 4001,
  SLOW_CONSUMER: 4008,
  RATE_LIMITED: 4029,
} as const;

/**
 * A group is spread over the phases from this many clients per phase (so each phase's encode still serves
 * many sockets), and sent whole again below the lower mark: the gap keeps a group at the edge from flapping.
 */
const SPREAD_CLIENTS_PER_PHASE = 25;
const GATHER_CLIENTS_PER_PHASE = 20;

// The slice lists slicesDue hands out, built once: it runs for every group at every phase (send_phases ≤ 100).
const NO_SLICES: readonly number[] = [];
const SINGLE_SLICES: readonly (readonly number[])[] = Array.from({ length: 100 }, (_, index) => [index]);
const BINARY_FRAME = { binary: true };
const TEXT_FRAME = { binary: false };
const statsKeys = new Map<string, string>();
/** `type|format`, one string shared by every client of that kind. */
function statsKeyOf(type: ClientType, format: Format): string {
  const key = `${type}|${format}`;
  const shared = statsKeys.get(key) ?? key;
  statsKeys.set(key, shared);
  return shared;
}

/** One connected client. */
export class HubClient {
  readonly id: number;
  readonly type: ClientType;
  readonly format: Format;
  readonly socket: ClientSocket;
  /** Built once: the send loop runs for every client at every tick. */
  readonly sendOptions: { binary: boolean };
  /** The key of `stats.sentBytes` its frames count under. */
  readonly statsKey: string;
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
    format: Format,
    socket: ClientSocket,
    principal: Principal,
    bucket: TokenBucket,
    now: number,
  ) {
    this.id = id;
    this.type = type;
    this.format = format;
    this.socket = socket;
    this.sendOptions = isBinary(format) ? BINARY_FRAME : TEXT_FRAME;
    this.statsKey = statsKeyOf(type, format);
    this.principal = principal;
    this.bucket = bucket;
    this.lastSeenAt = now;
    this.connectedAt = now;
  }
}

/**
 * Clients that share type, format and subscription set: each update is computed and encoded once for all of them,
 * or, once the group is spread, once per phase for the clients of that phase.
 */
class Group {
  readonly key: string;
  readonly type: ClientType;
  readonly format: Format;
  readonly filter: Filter;
  /** The clients by phase (`client.id % phases`), the slices a spread group is sent in. */
  readonly byPhase: Set<HubClient>[];
  /** Every slice index, for a group sent whole. */
  private readonly allSlices: readonly number[];
  /** The phase a group that is not spread is sent in (groups are dealt round the phases as they are created). */
  readonly phase: number;
  spread = false;
  /** The last snapshot encoded for the group and the state sequence it holds: clients subscribing together share it. */
  snapshot: { sequence: number; frame: Buffer } | undefined;
  /** Per phase slice, the lowest `scanned` of its clients: journal entries below the lowest of all can go. */
  readonly minScannedByPhase: number[];

  constructor(
    key: string,
    type: ClientType,
    format: Format,
    filter: Filter,
    sequence: number,
    phases: number,
    phase: number,
  ) {
    this.key = key;
    this.type = type;
    this.format = format;
    this.filter = filter;
    this.phase = phase;
    this.byPhase = Array.from({ length: phases }, () => new Set<HubClient>());
    this.allSlices = this.byPhase.map((_, index) => index);
    this.minScannedByPhase = new Array<number>(phases).fill(sequence);
  }

  get size(): number {
    let size = 0;
    for (const slice of this.byPhase) size += slice.size;
    return size;
  }

  get minScanned(): number {
    let lowest = this.minScannedByPhase[0];
    for (const scanned of this.minScannedByPhase) lowest = Math.min(lowest, scanned);
    return lowest;
  }

  /** The slices due in `phase`: one slice when spread, every slice in the group's own phase, else none. */
  slicesDue(phase: number): readonly number[] {
    if (this.spread) return SINGLE_SLICES[phase];
    return phase === this.phase ? this.allSlices : NO_SLICES;
  }
}

export interface HubStats {
  /** Update messages encoded, per client type (one per group per tick with changes). */
  broadcasts: Record<ClientType, number>;
  /** Bytes handed to sockets, by `type|format`. */
  sentBytes: Record<string, number>;
  /** Frames handed to sockets, per client type. */
  sentMessages: Record<ClientType, number>;
  /** Client messages rejected, by error code. */
  rejectedMessages: Record<string, number>;
  /** Sockets closed by the hub, by close code (`terminated` for a dead peer). */
  disconnects: Record<string, number>;
  /** Ticks a client was skipped because its socket buffer was over websocket.max_buffered. */
  slowConsumerSkips: number;
  /** Connections ended by a frame `ws` refused or a socket error, by error code (e.g. WS_ERR_UNSUPPORTED_MESSAGE_LENGTH). */
  socketErrors: Record<string, number>;
  /** Unexpected errors caught in the hub, by stage (see HubErrorStage): each one cost one tick, group or client. */
  errors: Record<string, number>;
  /** Snapshots (subscribe, resync) held back because the socket buffer was over websocket.max_buffered. */
  deferredSnapshots: number;
}

/**
 * Where an unexpected error was caught: `broadcast` (a group's diff or snapshot could not be built or encoded; its
 * clients are closed with 1011), `snapshot` (a held-back snapshot, same), `send` (handing a frame to one socket;
 * that socket is dropped), `message` (handling one client message; that client is closed with 1011), `heartbeat`
 * (one client's ping/liveness check), `tick` (anything else in a broadcast phase).
 */
export type HubErrorStage = 'broadcast' | 'snapshot' | 'send' | 'message' | 'heartbeat' | 'tick';

/**
 * The broadcaster: tracks clients and their subscriptions, answers client messages, and on each phase of a
 * client type's interval sends the groups (or slices of large groups) due in it the merge patch since what they
 * last received.
 */
export class Hub {
  readonly clients = new Set<HubClient>();
  readonly stats: HubStats = {
    broadcasts: { tui: 0, web: 0 },
    sentBytes: {},
    sentMessages: { tui: 0, web: 0 },
    rejectedMessages: {},
    disconnects: {},
    slowConsumerSkips: 0,
    socketErrors: {},
    errors: {},
    deferredSnapshots: 0,
  };
  private readonly errorLog = new LogThrottle(1000, () => this.now());
  /** Clients with a snapshot held back for a full socket buffer: each tick of their type retries. */
  private readonly pendingSnapshots = new Set<HubClient>();
  private readonly groups = new Map<string, Group>();
  /** Open sockets per user, for websocket.max_clients_per_user. */
  private readonly perUser = new Map<string, number>();
  private readonly state: StateStore;
  private readonly options: HubOptions;
  private readonly now: () => number;
  private readonly timers: NodeJS.Timeout[] = [];
  /** The one timer that runs the phases of both client types, and when each type's next phase is due. */
  private phaseTimer: NodeJS.Timeout | undefined;
  private readonly phaseDue: Record<ClientType, number> = { tui: 0, web: 0 };
  private readonly phases: number;
  /** The next phase of each client type's interval. */
  private readonly nextPhase: Record<ClientType, number> = { tui: 0, web: 0 };
  private groupsCreated = 0;
  private nextId = 1;
  /** Called with the duration of each broadcast phase, in seconds (the metrics plugin sets it). */
  onTick: ((type: ClientType, seconds: number) => void) | undefined;

  constructor(state: StateStore, options: HubOptions) {
    this.state = state;
    this.options = options;
    this.now = options.now ?? Date.now;
    this.phases = options.sendPhases ?? 1;
  }

  start(): void {
    const now = performance.now();
    for (const type of CLIENT_TYPES) this.phaseDue[type] = now + this.phaseLength(type);
    this.armPhaseTimer();
    // Often enough both for the ping cadence and to notice, within max_lag, a client that stopped reading.
    const heartbeatEvery = Math.min(this.options.pingInterval, Math.max(10, this.options.maxLag / 4));
    this.timers.push(
      setInterval(() => {
        try {
          this.heartbeat();
        } catch (error) {
          this.failed('heartbeat', error, {});
        }
      }, heartbeatEvery),
    );
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers.length = 0;
    clearTimeout(this.phaseTimer);
    this.phaseTimer = undefined;
  }

  private phaseLength(type: ClientType): number {
    return this.options.intervals[type] / this.phases;
  }

  /**
   * Phases run on a fixed schedule from one timer. setInterval would start each wait after its callback, so a busy
   * loop would lose a few ms per phase and clients would get fewer updates than their cadence. When the loop is
   * saturated, the type furthest behind in proportion to its interval goes first, so both types slow down alike
   * (two timers would take turns, giving the 100 ms type as few phases as the 250 ms one). A type is never
   * counted more than one interval behind: after a stall it catches up one interval at most, not a burst.
   */
  private armPhaseTimer(): void {
    const now = performance.now();
    const { tui, web } = this.phaseDue;
    const behind = (type: ClientType) => (now - this.phaseDue[type]) / this.options.intervals[type];
    const type: ClientType =
      tui <= now || web <= now
        ? behind('tui') >= behind('web')
          ? 'tui'
          : 'web'
        : tui <= web
          ? 'tui'
          : 'web';
    this.phaseTimer = setTimeout(
      () => {
        this.tick(type);
        if (this.phaseTimer === undefined) return; // stopped during the tick
        const interval = this.options.intervals[type];
        this.phaseDue[type] = Math.max(
          this.phaseDue[type] + this.phaseLength(type),
          performance.now() - interval,
        );
        this.armPhaseTimer();
      },
      Math.max(0, this.phaseDue[type] - now),
    );
  }

  clientsByType(): Record<ClientType, number> {
    const counts = { tui: 0, web: 0 };
    for (const client of this.clients) counts[client.type]++;
    return counts;
  }

  get groupCount(): number {
    return this.groups.size;
  }

  /** Groups large enough to be sent in slices spread over the interval. */
  get spreadGroupCount(): number {
    let spread = 0;
    for (const group of this.groups.values()) if (group.spread) spread++;
    return spread;
  }

  /** Open sockets of one user. */
  clientCount(userId: string): number {
    return this.perUser.get(userId) ?? 0;
  }

  /** Registers a socket and wires its events. Must be called synchronously in the upgrade handler. */
  connect(
    socket: ClientSocket,
    type: ClientType,
    format: Format,
    principal: Principal = ANONYMOUS_PRINCIPAL,
  ): HubClient {
    const { messagesPerSecond, burst } = this.options.rateLimit;
    const bucket = new TokenBucket(messagesPerSecond, burst);
    const client = new HubClient(this.nextId++, type, format, socket, principal, bucket, this.now());
    this.clients.add(client);
    this.perUser.set(principal.userId, this.clientCount(principal.userId) + 1);
    this.scheduleExpiry(client);
    socket.on('message', (data, binary) => this.receive(client, data, binary));
    socket.on('pong', () => {
      client.lastSeenAt = this.now();
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

  /**
   * A frame `ws` refuses (over websocket.max_message_size, bad opcode or UTF-8) or a socket error: `ws` has already
   * sent its close code (1009, 1002, 1007); the socket goes, and the log says so once per second per kind.
   */
  private socketFailed(client: HubClient, error: Error & { code?: string }): void {
    const kind = error.code ?? error.name;
    this.stats.socketErrors[kind] = (this.stats.socketErrors[kind] ?? 0) + 1;
    const suppressed = this.errorLog.allow(kind);
    if (suppressed !== undefined) {
      this.options.logger.warn(
        { client: client.id, user: client.principal.userId, error: error.message, code: kind, suppressed },
        'websocket error; connection closed',
      );
    }
    client.socket.terminate();
    this.disconnect(client);
  }

  disconnect(client: HubClient): void {
    if (!this.clients.delete(client)) return;
    clearTimeout(client.expiryTimer);
    this.pendingSnapshots.delete(client);
    const userId = client.principal.userId;
    const remaining = this.clientCount(userId) - 1;
    if (remaining > 0) this.perUser.set(userId, remaining);
    else this.perUser.delete(userId);
    this.leaveGroup(client);
  }

  /** Closes the socket with 4001 when its token expires, unless a fresh token arrives first. */
  private scheduleExpiry(client: HubClient): void {
    clearTimeout(client.expiryTimer);
    const expiresAt = client.principal.expiresAt;
    if (expiresAt === undefined) return;
    // setTimeout holds at most ~24.8 days; a token valid longer is checked again then.
    const delay = Math.min(Math.max(0, expiresAt - this.now()), 2 ** 31 - 1);
    client.expiryTimer = setTimeout(() => {
      if (this.now() >= expiresAt) this.close(client, CloseCode.TOKEN_EXPIRED, 'token_expired');
      else this.scheduleExpiry(client);
    }, delay);
  }

  /** Takes a token from the client's bucket; over the limit too often within the window closes it (4029). */
  private withinRate(client: HubClient): boolean {
    if (client.bucket.take()) return true;
    const { maxViolations, window } = this.options.rateLimit;
    const now = this.now();
    if (now - client.violationWindowStart > window) {
      client.violationWindowStart = now;
      client.violations = 0;
    }
    client.violations++;
    if (client.violations > maxViolations) {
      this.close(client, CloseCode.RATE_LIMITED, 'rate_limited');
    } else {
      this.reject(client, new ProtocolError('rate_limited', 'too many messages; this one was ignored'));
    }
    return false;
  }

  private reject(client: HubClient, error: ProtocolError): void {
    this.stats.rejectedMessages[error.code] = (this.stats.rejectedMessages[error.code] ?? 0) + 1;
    this.reply(client, { type: 'error', code: error.code, message: error.message });
  }

  /** Handles one frame from a client; an unexpected failure closes that client only. */
  receive(client: HubClient, data: Buffer, binary: boolean): void {
    // A peer may go on sending after the hub closed it (close frames can be ignored): that client is gone.
    if (!this.clients.has(client)) return;
    client.lastSeenAt = this.now();
    if (!this.withinRate(client)) return;
    try {
      this.execute(client, parseClientMessage(data, binary));
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.reject(client, error);
        return;
      }
      this.failed('message', error, { client: client.id }, 'client handler failed; closing that client');
      this.closeQuietly(client, CloseCode.INTERNAL_ERROR, 'internal_error');
    }
  }

  /**
   * Counts an unexpected error by stage and logs it, at most once per second per stage (with the number held
   * back): a value that breaks encoding would otherwise fail at every tick.
   */
  private failed(
    stage: HubErrorStage,
    error: unknown,
    context: object,
    message = `hub ${stage} failed`,
  ): void {
    this.stats.errors[stage] = (this.stats.errors[stage] ?? 0) + 1;
    const suppressed = this.errorLog.allow(`hub:${stage}`);
    if (suppressed === undefined) return;
    this.options.logger.error({ err: error, stage, ...context, suppressed }, message);
  }

  /** close() for a client the hub may no longer be able to write to: whatever the socket throws, it is gone. */
  private closeQuietly(client: HubClient, code: number, reason: string): void {
    try {
      this.close(client, code, reason);
    } catch {
      client.socket.terminate();
      this.disconnect(client);
    }
  }

  execute(client: HubClient, command: Command): void {
    switch (command.action) {
      case 'subscribe': {
        const { mayRead } = this.options;
        const forbidden = mayRead
          ? command.subscriptions.filter((name) => !mayRead(client.principal, name))
          : [];
        if (forbidden.length > 0) {
          throw new ProtocolError(
            'forbidden_topic',
            `role ${client.principal.role} may not subscribe to ${forbidden.join(', ')}; nothing was added`,
          );
        }
        const added = command.subscriptions.filter((name) => !client.subscriptions.has(name)).length;
        if (client.subscriptions.size + added > this.options.maxSubscriptions) {
          throw new ProtocolError(
            'too_many_subscriptions',
            `at most ${this.options.maxSubscriptions} subscriptions per connection; nothing was added`,
          );
        }
        for (const name of command.subscriptions) client.subscriptions.add(name);
        this.regroup(client, 'subscribed');
        return;
      }
      case 'unsubscribe': {
        for (const name of command.subscriptions) client.subscriptions.delete(name);
        this.regroup(client, 'unsubscribed');
        return;
      }
      case 'resync':
        if (client.group) this.sendSnapshot(client);
        return;
      case 'ping':
        this.reply(client, { type: 'pong', timestamp: new Date(this.now()).toISOString() });
        return;
      case 'auth':
        this.refreshToken(client, command.token);
        return;
    }
  }

  /** A fresh token for the same user extends the session; anything else leaves it as it was. */
  private refreshToken(client: HubClient, token: string): void {
    if (!this.options.verifyToken) {
      this.reply(client, { type: 'authenticated', user_id: client.principal.userId, expires_at: null });
      return;
    }
    let principal: Principal;
    try {
      principal = this.options.verifyToken(token);
    } catch (error) {
      throw new ProtocolError(
        'invalid_token',
        `token refused: ${(error as Error).message}; the session is unchanged`,
      );
    }
    if (principal.userId !== client.principal.userId) {
      throw new ProtocolError('invalid_token', 'token is for another user; the session is unchanged');
    }
    client.principal = principal;
    this.scheduleExpiry(client);
    // A new role may allow less: drop what it no longer allows.
    const { mayRead } = this.options;
    const dropped = mayRead ? [...client.subscriptions].filter((name) => !mayRead(principal, name)) : [];
    for (const name of dropped) client.subscriptions.delete(name);
    this.reply(client, {
      type: 'authenticated',
      user_id: principal.userId,
      expires_at: principal.expiresAt === undefined ? null : new Date(principal.expiresAt).toISOString(),
    });
    if (dropped.length > 0) this.regroup(client, 'unsubscribed');
  }

  /** After the subscription set changed: the client's new group, the reply with its set, its new view. */
  private regroup(client: HubClient, reply: 'subscribed' | 'unsubscribed'): void {
    this.joinGroup(client);
    if (!client.group) this.cancelSnapshot(client);
    this.reply(client, {
      type: reply,
      subscriptions: [...client.subscriptions],
      sequence: this.state.sequence,
    });
    if (client.group) this.sendSnapshot(client);
  }

  /**
   * Closes one client's socket with a code and reason, counting it. A slow consumer (4008) is terminated at once:
   * the close frame reaches it if the kernel still takes data, and its buffers are released now rather than after
   * ws's 30 s wait for a close handshake it will not answer.
   */
  close(client: HubClient, code: number, reason: string): void {
    this.stats.disconnects[code] = (this.stats.disconnects[code] ?? 0) + 1;
    client.socket.close(code, reason);
    if (code === CloseCode.SLOW_CONSUMER) client.socket.terminate();
    this.disconnect(client);
  }

  /**
   * One phase of a client type's interval: every slice due in it (whole groups dealt to this phase, and this
   * phase's share of each spread group) is sent what changed since it last heard from the hub. A client is in one
   * slice, and every slice comes round once per interval, so each client still gets at most one update per
   * interval, always the latest state.
   */
  tick(type: ClientType): void {
    const started = performance.now();
    const phase = this.nextPhase[type];
    this.nextPhase[type] = (phase + 1) % this.phases;
    // An error costs the group (or client) it happened in, never the other groups, the timer or the process.
    try {
      const sequence = this.state.sequence;
      for (const group of this.groups.values()) {
        if (group.type !== type) continue;
        // Shared by the clients that subscribed since the last phase; kept no longer, it can be large.
        group.snapshot = undefined;
        const due = group.slicesDue(phase).filter((slice) => group.minScannedByPhase[slice] < sequence);
        if (due.length === 0) continue;
        try {
          this.broadcast(group, due, sequence);
        } catch (error) {
          this.failed('broadcast', error, { group: group.key });
        }
      }
      if (this.pendingSnapshots.size > 0) this.sendPendingSnapshots(type);
      this.trimJournal();
      this.onTick?.(type, (performance.now() - started) / 1000);
    } catch (error) {
      this.failed('tick', error, { client_type: type });
    }
  }

  /**
   * Liveness and lag, for every client: silent for longer than the read timeout → terminated; a ping unanswered
   * for longer than max_lag while updates were being sent → 4008, because a client that stopped reading hides
   * megabytes in kernel buffers before its buffered amount grows. Pings go out every ping interval, and every
   * max_lag / 2 to clients that are being sent data.
   */
  heartbeat(): void {
    const now = this.now();
    for (const client of [...this.clients]) {
      try {
        this.checkLiveness(client, now);
      } catch (error) {
        this.failed('heartbeat', error, { client: client.id });
      }
    }
  }

  private checkLiveness(client: HubClient, now: number): void {
    const { readTimeout, maxLag, pingInterval } = this.options;
    if (client.lastSeenAt < now - readTimeout) {
      this.stats.disconnects.terminated = (this.stats.disconnects.terminated ?? 0) + 1;
      client.socket.terminate();
      this.disconnect(client);
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
    }
  }

  /** The largest socket buffer of any client, in bytes (a gauge for the metrics). */
  maxBufferedAmount(): number {
    let largest = 0;
    for (const client of this.clients) largest = Math.max(largest, client.socket.bufferedAmount);
    return largest;
  }

  /** Closes every client with `code`, e.g. 1001 at shutdown. */
  closeAll(code: number, reason: string): void {
    for (const client of [...this.clients]) this.close(client, code, reason);
  }

  /** Users and their open socket counts, for /debug. */
  get users(): number {
    return this.perUser.size;
  }

  /** Sends the clients of the given slices of a group, one encode per cohort. */
  private broadcast(group: Group, slices: number[], sequence: number): void {
    // Clients normally all hold the same view; those that do not (just subscribed, or skipped while their
    // buffer was full) get their own patch, from their own sequence: one merged diff, never a backlog.
    const cohorts = new Map<string, HubClient[]>();
    const now = this.now();
    for (const slice of slices) this.addToCohorts(cohorts, group.byPhase[slice], sequence, now);
    for (const clients of cohorts.values()) {
      const { sequence: base, scanned } = clients[0];
      let frame: Buffer | undefined;
      try {
        const changes = this.state.changesSince(scanned, group.filter);
        if (changes !== undefined) {
          frame =
            changes === TOO_OLD
              ? this.groupSnapshot(group)
              : encode(group.format, {
                  type: 'diff_update',
                  sequence,
                  base_sequence: base,
                  timestamp: new Date(now).toISOString(),
                  changes,
                });
        }
      } catch (error) {
        // A value that cannot be diffed or encoded: these clients cannot be brought up to date, and keeping them
        // would fail again at every tick and hold the journal. They reconnect (1011) for a fresh snapshot.
        this.failed('broadcast', error, { group: group.key, clients: clients.length });
        for (const client of clients) this.closeQuietly(client, CloseCode.INTERNAL_ERROR, 'internal_error');
        continue;
      }
      if (frame === undefined) {
        for (const client of clients) client.scanned = sequence;
        continue;
      }
      this.stats.broadcasts[group.type]++;
      for (const client of clients) {
        this.send(client, frame);
        client.sequence = sequence;
        client.scanned = sequence;
      }
    }
    for (const slice of slices) {
      let lowest = sequence;
      for (const client of group.byPhase[slice]) {
        // A client waiting for a snapshot needs no journal: it will be sent the whole view.
        if (!client.pendingSnapshot) lowest = Math.min(lowest, client.scanned);
      }
      group.minScannedByPhase[slice] = lowest;
    }
  }

  /** The snapshots held back for a full buffer, for clients of `type` whose buffer has drained since. */
  private sendPendingSnapshots(type: ClientType): void {
    const now = this.now();
    for (const client of [...this.pendingSnapshots]) {
      if (client.type !== type || this.lagging(client, now)) continue;
      this.cancelSnapshot(client);
      try {
        this.sendSnapshot(client);
      } catch (error) {
        this.failed('snapshot', error, { client: client.id });
        this.closeQuietly(client, CloseCode.INTERNAL_ERROR, 'internal_error');
      }
    }
  }

  private cancelSnapshot(client: HubClient): void {
    client.pendingSnapshot = false;
    this.pendingSnapshots.delete(client);
  }

  /**
   * Whether the client's socket buffer is over websocket.max_buffered: it is skipped (counted), and closed with
   * 4008 once it has been behind for longer than websocket.max_lag.
   */
  private lagging(client: HubClient, now: number): boolean {
    if (client.socket.bufferedAmount <= this.options.maxBuffered) {
      client.behindSince = undefined;
      return false;
    }
    this.stats.slowConsumerSkips++;
    client.behindSince ??= now;
    if (now - client.behindSince > this.options.maxLag)
      this.close(client, CloseCode.SLOW_CONSUMER, 'slow_consumer');
    return true;
  }

  /** Sorts clients that are behind `sequence` into cohorts by the view they hold; slow ones are skipped. */
  private addToCohorts(
    cohorts: Map<string, HubClient[]>,
    clients: Set<HubClient>,
    sequence: number,
    now: number,
  ): void {
    let common: HubClient[] | undefined;
    for (const client of clients) {
      // A client waiting for a snapshot gets it, not a diff, once it drains (sendPendingSnapshots).
      if (client.scanned >= sequence || client.pendingSnapshot) continue;
      if (this.lagging(client, now)) continue;
      // Nearly every client holds the view of the first one seen: no key to build for those.
      if (common && client.sequence === common[0].sequence && client.scanned === common[0].scanned) {
        common.push(client);
        continue;
      }
      const key = `${client.sequence}/${client.scanned}`;
      const cohort = cohorts.get(key);
      if (cohort) cohort.push(client);
      else cohorts.set(key, [client]);
      common ??= cohorts.get(key);
    }
  }

  private trimJournal(): void {
    let lowest = this.state.sequence;
    for (const group of this.groups.values()) lowest = Math.min(lowest, group.minScanned);
    this.state.trimJournal(lowest);
  }

  private joinGroup(client: HubClient): void {
    this.leaveGroup(client);
    if (client.subscriptions.size === 0) return;
    const key = `${client.type}|${client.format}|${subscriptionKey(client.subscriptions)}`;
    let group = this.groups.get(key);
    if (!group) {
      group = new Group(
        key,
        client.type,
        client.format,
        buildFilter(client.subscriptions),
        this.state.sequence,
        this.phases,
        this.groupsCreated++ % this.phases,
      );
      this.groups.set(key, group);
    }
    group.byPhase[client.id % this.phases].add(client);
    client.group = group;
    if (this.phases > 1 && group.size >= SPREAD_CLIENTS_PER_PHASE * this.phases) group.spread = true;
  }

  private leaveGroup(client: HubClient): void {
    const group = client.group;
    if (!group) return;
    group.byPhase[client.id % this.phases].delete(client);
    client.group = undefined;
    if (group.size === 0) this.groups.delete(group.key);
    else if (group.size < GATHER_CLIENTS_PER_PHASE * this.phases) group.spread = false;
  }

  private encodeSnapshot(format: Format, filter: Filter): Buffer {
    return encode(format, {
      type: 'state_update',
      sequence: this.state.sequence,
      epoch: this.state.epoch,
      timestamp: new Date(this.now()).toISOString(),
      data: this.state.snapshot(filter),
    });
  }

  /** The group's snapshot of the current state, encoded once per state sequence. */
  private groupSnapshot(group: Group): Buffer {
    const sequence = this.state.sequence;
    if (group.snapshot?.sequence !== sequence) {
      group.snapshot = { sequence, frame: this.encodeSnapshot(group.format, group.filter) };
    }
    return group.snapshot.frame;
  }

  /**
   * Sends the client its group's snapshot now, or, while its socket buffer is over websocket.max_buffered, holds
   * it back (one per client, however many are asked for) until a tick finds the buffer drained: a client that
   * does not read cannot make the hub queue snapshot after snapshot.
   */
  private sendSnapshot(client: HubClient): void {
    if (client.socket.bufferedAmount > this.options.maxBuffered) {
      if (!client.pendingSnapshot) {
        client.pendingSnapshot = true;
        this.pendingSnapshots.add(client);
        this.stats.deferredSnapshots++;
      }
      return;
    }
    this.cancelSnapshot(client);
    this.send(client, this.groupSnapshot(client.group!));
    client.sequence = this.state.sequence;
    client.scanned = this.state.sequence;
  }

  private reply(client: HubClient, message: object): void {
    this.send(client, encode(client.format, message));
  }

  /** The one place a frame goes to a socket; a socket that throws is dropped, the others go on. */
  private send(client: HubClient, frame: Buffer): void {
    if (client.socket.readyState !== OPEN) return;
    try {
      client.socket.send(frame, client.sendOptions);
    } catch (error) {
      this.failed('send', error, { client: client.id });
      this.stats.disconnects.terminated = (this.stats.disconnects.terminated ?? 0) + 1;
      client.socket.terminate();
      this.disconnect(client);
      return;
    }
    client.sentSincePing = true;
    this.stats.sentBytes[client.statsKey] = (this.stats.sentBytes[client.statsKey] ?? 0) + frame.length;
    this.stats.sentMessages[client.type]++;
  }
}
