import { ANONYMOUS_PRINCIPAL, type Principal } from '../access.ts';
import type { ActionSubmitter } from '../actions/types.ts';
import type { Format } from '../codec.ts';
import type { StateStore } from '../state.ts';
import type { Command } from './command.ts';
import { Commands } from './commands.ts';
import { FanOut } from './fan-out.ts';
import { Groups } from './groups.ts';
import type { WireProtocol } from './protocol.ts';
import { hubProtocol } from './protocols/hub.ts';
import { Protocols } from './protocols/index.ts';
import { type PhaseClock, PhaseScheduler } from './scheduler.ts';
import { type ClientSocket, type ClientType, type HubClient, Sessions } from './session.ts';
import { ErrorReport, emptyStats, type HubLogger, type HubStats } from './stats.ts';

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
  /** Wall-clock time in ms (timestamps, liveness, rate-limit windows). */
  now?: () => number;
  /** The phase timer's monotonic clock and timers. */
  phaseClock?: PhaseClock;
  /** The wire protocols a connection may speak besides the hub's own (legacy.tui_orderbook_symbol). */
  protocols?: Protocols;
  /** Who acts on trading actions (the actions plugin); without it every action is refused. */
  actions?: ActionSubmitter;
}

/** What the hub reports to whoever observes it (the metrics plugin). Every method is optional. */
export interface HubObserver {
  /** One broadcast phase of `type` ran, taking `seconds`. */
  tick?(type: ClientType, seconds: number): void;
  /** A client is gone (closed, terminated, or its socket closed); called once per client. */
  left?(client: HubClient): void;
}

/**
 * The hub: composes the sessions (lifecycle, heartbeat), the commands, the subscription groups, the fan-out and
 * the phase scheduler. On each phase of a client type's interval, the groups (or slices of large groups) due in
 * it are sent the merge patch since what they last received, in each connection's wire protocol.
 */
export class Hub {
  readonly stats: HubStats = emptyStats();
  private readonly sessions: Sessions;
  private readonly groups: Groups;
  private readonly fanOut: FanOut;
  private readonly commands: Commands;
  private readonly scheduler: PhaseScheduler;
  private readonly errors: ErrorReport;
  private readonly observers = new Set<HubObserver>();
  readonly protocols: Protocols;
  private heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(state: StateStore, options: HubOptions) {
    const now = options.now ?? Date.now;
    this.errors = new ErrorReport(this.stats, options.logger, now);
    this.groups = new Groups(options.sendPhases ?? 1);
    this.protocols = options.protocols ?? new Protocols();
    this.sessions = new Sessions({ ...options, now }, this.stats, this.errors, {
      message: (client, data, binary) => this.commands.receive(client, data, binary),
      left: (client) => {
        this.fanOut.cancelSnapshot(client);
        this.groups.leave(client);
        this.notify('left', { client: client.id }, (observer) => observer.left?.(client));
      },
      pinged: (client, at) => this.fanOut.sendFrames(client, client.protocol.heartbeat?.(at)),
    });
    this.fanOut = new FanOut(state, this.groups, this.sessions, this.stats, this.errors, { ...options, now });
    this.commands = new Commands(state, this.sessions, this.groups, this.fanOut, this.stats, this.errors, {
      ...options,
      protocols: this.protocols,
      now,
    });
    this.scheduler = new PhaseScheduler({
      intervals: options.intervals,
      phases: options.sendPhases ?? 1,
      run: (type, phase) => this.runPhase(type, phase),
      clock: options.phaseClock,
    });
  }

  start(): void {
    this.scheduler.start();
    this.heartbeatTimer = setInterval(() => {
      try {
        this.sessions.heartbeat();
      } catch (error) {
        this.errors.failed('heartbeat', error, {});
      }
    }, this.sessions.heartbeatEvery);
  }

  stop(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.scheduler.stop();
  }

  /** Adds an observer; returns the function that removes it. */
  observe(observer: HubObserver): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  /**
   * Registers a socket and wires its events. Must be called synchronously in the upgrade handler. The client
   * speaks `protocol` (the hub's own, in `format`, unless another is given). `choosing`: the upgrade named no
   * protocol, so the client's first message may still choose one (see Protocols.chosenBy).
   */
  connect(
    socket: ClientSocket,
    type: ClientType,
    format: Format,
    principal: Principal = ANONYMOUS_PRINCIPAL,
    protocol: WireProtocol = hubProtocol(format),
    choosing: false | { typeGiven: boolean } = false,
  ): HubClient {
    const client = this.sessions.connect(socket, type, protocol, principal);
    client.choosing = choosing;
    return client;
  }

  /** Open sockets by client type, then by protocol name (the `protocol` label, /debug). */
  clientsByProtocol(): Record<ClientType, Record<string, number>> {
    return this.sessions.clientsByProtocol();
  }

  /** Open sockets by client type, then by format (`json`, `msgpack`; /debug). */
  clientsByFormat(): Record<ClientType, Record<string, number>> {
    return this.sessions.clientsByFormat();
  }

  /** Handles one frame from a client; an unexpected failure closes that client only. */
  receive(client: HubClient, data: Buffer, binary: boolean): void {
    this.commands.receive(client, data, binary);
  }

  /** Acts on one parsed command (throws ProtocolError when it is refused). */
  execute(client: HubClient, command: Command): void {
    this.commands.execute(client, command);
  }

  disconnect(client: HubClient): void {
    this.sessions.disconnect(client);
  }

  /** Closes one client's socket with a code and reason, counting it. */
  close(client: HubClient, code: number, reason: string): void {
    this.sessions.close(client, code, reason);
  }

  /** Closes every client with `code`, e.g. 1001 at shutdown. */
  closeAll(code: number, reason: string): void {
    this.sessions.closeAll(code, reason);
  }

  /** The next phase of `type`, now (the scheduler's timer calls the same). */
  tick(type: ClientType): void {
    this.runPhase(type, this.scheduler.advance(type));
  }

  /** One liveness and ping round over every client (the heartbeat timer calls the same). */
  heartbeat(): void {
    this.sessions.heartbeat();
  }

  private runPhase(type: ClientType, phase: number): void {
    const started = performance.now();
    if (!this.fanOut.phase(type, phase)) return;
    if (this.observers.size === 0) return;
    const seconds = (performance.now() - started) / 1000;
    this.notify('tick', { client_type: type }, (observer) => observer.tick?.(type, seconds));
  }

  /** Tells every observer; one that throws is counted under `stage` and the others are told all the same. */
  private notify(stage: 'tick' | 'left', context: object, tell: (observer: HubObserver) => void): void {
    for (const observer of this.observers) {
      try {
        tell(observer);
      } catch (error) {
        this.errors.failed(stage, error, context);
      }
    }
  }

  get clients(): ReadonlySet<HubClient> {
    return this.sessions.clients;
  }

  clientsByType(): Record<ClientType, number> {
    return this.sessions.clientsByType();
  }

  /** Open sockets of one user. */
  clientCount(userId: string): number {
    return this.sessions.clientCount(userId);
  }

  /** Users with at least one open socket, for /debug. */
  get users(): number {
    return this.sessions.users;
  }

  get groupCount(): number {
    return this.groups.size;
  }

  /** Groups large enough to be sent in slices spread over the interval. */
  get spreadGroupCount(): number {
    return this.groups.spreadCount;
  }

  /** The largest socket buffer of any client, in bytes (a gauge for the metrics). */
  maxBufferedAmount(): number {
    return this.sessions.maxBufferedAmount();
  }
}
