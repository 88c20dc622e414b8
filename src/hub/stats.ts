import type { Format } from '../codec.ts';
import { LogThrottle } from '../log-throttle.ts';
import type { ClientType } from './session.ts';

export interface HubLogger {
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface HubStats {
  /** Update messages encoded, per client type (one per group per tick with changes). */
  broadcasts: Record<ClientType, number>;
  /** Bytes handed to sockets, per client type, then per format. */
  sentBytes: Record<ClientType, Partial<Record<Format, number>>>;
  /** Frames handed to sockets, per client type. */
  sentMessages: Record<ClientType, number>;
  /** Bytes and frames handed to sockets, per client type, then per protocol (`protocol` label of the metrics). */
  sentByProtocol: Record<ClientType, Record<string, { bytes: number; messages: number }>>;
  /** Client messages refused and not answered, because the client's protocol has no message for the refusal. */
  unansweredRejections: number;
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

export function emptyStats(): HubStats {
  return {
    broadcasts: { tui: 0, web: 0 },
    sentBytes: { tui: {}, web: {} },
    sentMessages: { tui: 0, web: 0 },
    sentByProtocol: { tui: {}, web: {} },
    unansweredRejections: 0,
    rejectedMessages: {},
    disconnects: {},
    slowConsumerSkips: 0,
    socketErrors: {},
    errors: {},
    deferredSnapshots: 0,
  };
}

/** Adds one to a counter of a record keyed by code, stage or close code. */
export function count(record: Record<string, number>, key: string | number): void {
  record[key] = (record[key] ?? 0) + 1;
}

/**
 * Where an unexpected error was caught: `broadcast` (a group's diff or snapshot could not be built or encoded; its
 * clients are closed with 1011), `snapshot` (a held-back snapshot, same), `send` (handing a frame to one socket;
 * that socket is dropped), `message` (handling one client message; that client is closed with 1011), `heartbeat`
 * (one client's ping/liveness check), `tick` (anything else in a broadcast phase), `left` (an observer told of a
 * client leaving).
 */
export type HubErrorStage = 'broadcast' | 'snapshot' | 'send' | 'message' | 'heartbeat' | 'tick' | 'left';

/** Counts unexpected errors by stage and logs them, at most once per second per stage (with the number held back). */
export class ErrorReport {
  private readonly stats: HubStats;
  private readonly logger: HubLogger;
  private readonly log: LogThrottle;

  constructor(stats: HubStats, logger: HubLogger, now: () => number) {
    this.stats = stats;
    this.logger = logger;
    this.log = new LogThrottle(1000, now);
  }

  /** A value that breaks encoding would otherwise fail, and log, at every tick. */
  failed(stage: HubErrorStage, error: unknown, context: object, message = `hub ${stage} failed`): void {
    count(this.stats.errors, stage);
    const suppressed = this.log.allow(`hub:${stage}`);
    if (suppressed === undefined) return;
    this.logger.error({ err: error, stage, ...context, suppressed }, message);
  }

  /** A client message refused without an answer (its protocol has none): logged once per second per code. */
  refused(code: string, message: string, context: object): void {
    const suppressed = this.log.allow(`refused:${code}`);
    if (suppressed === undefined) return;
    this.logger.warn({ ...context, code, suppressed }, `client message refused: ${message}`);
  }

  /** A socket error or a frame `ws` refused: counted by kind, logged once per second per kind. */
  socketFailed(error: Error & { code?: string }, context: object): void {
    const kind = error.code ?? error.name;
    count(this.stats.socketErrors, kind);
    const suppressed = this.log.allow(kind);
    if (suppressed === undefined) return;
    this.logger.warn(
      { ...context, error: error.message, code: kind, suppressed },
      'websocket error; connection closed',
    );
  }
}
