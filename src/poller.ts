import CircuitBreaker from 'opossum';
import type { SourceName } from './backends.ts';
import type { BreakerConfig } from './config/schema.ts';
import type { JsonObject } from './merge-patch.ts';
import { failSpan, type Span, withSpan } from './tracing.ts';

export type SourceHealth = 'ok' | 'degraded' | 'down';
export type BreakerState = 'closed' | 'open' | 'half_open';

/** What `system.sources.<name>` shows clients, /debug and the metrics. */
export interface SourceStatus {
  status: SourceHealth;
  breaker: BreakerState;
  /** ISO time of the last successful poll, or null before the first. */
  last_success: string | null;
  /** The last failure, kept after recovery for the record. */
  last_error: string | null;
  /** Since when the data of this source is stale (the first failure after a success), or null. */
  stale_since: string | null;
}

export const POLL_OUTCOMES = ['success', 'failure', 'timeout', 'rejected'] as const;

/** Why a poll under way was aborted by `pause()`: not a failure of the backend, nothing is recorded. */
const PAUSED = new Error('poller paused: this replica stopped leading');
export type PollOutcome = (typeof POLL_OUTCOMES)[number];

export interface PolledSourceOptions<T> {
  name: SourceName;
  /** ms between polls */
  interval: number;
  /** ms a poll may take; the call is aborted after it */
  timeout: number;
  breaker: BreakerConfig;
  /** Calls the backend and validates the answer; must honour `signal`. */
  fetch: (signal: AbortSignal) => Promise<T>;
  /** Writes a valid result to the state; `startedAt` is when the poll began (Date.now()). */
  apply: (result: T, startedAt: number) => void;
  /** Called after every poll that reached the backend, and when the breaker changes state. */
  onStatus: (name: SourceName, status: SourceStatus) => void;
  /** Called after each poll, for the metrics. */
  onPoll?: (name: SourceName, outcome: PollOutcome, seconds: number) => void;
  /** Called when the breaker closes again after being open. */
  onRecovered?: (name: SourceName) => void;
  logger: { warn(object: object, message: string): void; info(object: object, message: string): void };
  /** Largest random delay before a triggered poll, in ms, so a restart does not stampede the backends. */
  jitter?: number;
}

/**
 * One backend polled on its own schedule through its own circuit breaker (opossum). A failed or refused poll
 * leaves the section's last known data in place and marks the source stale; nothing is ever made up.
 */
export class PolledSource<T = unknown> {
  readonly name: SourceName;
  readonly status: SourceStatus = {
    status: 'down',
    breaker: 'closed',
    last_success: null,
    last_error: null,
    stale_since: null,
  };
  readonly counts: Record<PollOutcome, number> = { success: 0, failure: 0, timeout: 0, rejected: 0 };
  readonly breaker: CircuitBreaker<[AbortSignal, number], void>;
  private readonly options: PolledSourceOptions<T>;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = true;
  private current: AbortController | undefined;

  constructor(options: PolledSourceOptions<T>) {
    this.name = options.name;
    this.options = options;
    const { breaker } = options;
    // Fetch and apply are one guarded call: an answer the state refuses is a failure of the source too.
    const pollOnce = async (signal: AbortSignal, startedAt: number) => {
      const result = await options.fetch(signal);
      if (signal.aborted) throw signal.reason;
      options.apply(result, startedAt);
    };
    this.breaker = new CircuitBreaker(pollOnce, {
      // The call aborts itself at `timeout`; the breaker's own timer is a backstop a little later.
      timeout: options.timeout + 250,
      errorThresholdPercentage: breaker.error_threshold_percentage,
      volumeThreshold: breaker.volume_threshold,
      resetTimeout: breaker.reset_timeout,
      rollingCountTimeout: breaker.rolling_window,
      rollingCountBuckets: 10,
      // A poll aborted because this replica stopped leading says nothing of the backend.
      errorFilter: () => this.current?.signal.reason === PAUSED,
    });
    this.breaker.on('open', () => this.setBreaker('open'));
    this.breaker.on('halfOpen', () => {
      this.setBreaker('half_open');
      // The probe: poll now instead of waiting for the next interval.
      this.pollSoon(0);
    });
    this.breaker.on('close', () => {
      const wasOpen = this.status.breaker !== 'closed';
      this.setBreaker('closed');
      if (wasOpen) this.options.onRecovered?.(this.name);
    });
  }

  start(): void {
    this.stopped = false;
    this.pollSoon();
  }

  /** Polls no more until `start()`; a poll under way is aborted (this replica stopped leading). */
  pause(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.current?.abort(PAUSED);
  }

  /** For good: also shuts the breaker down. */
  stop(): void {
    this.pause();
    this.breaker.shutdown();
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Takes the status the leading replica relayed (this one does not poll): /debug and the metrics show it. */
  adopt(status: SourceStatus): void {
    Object.assign(this.status, status);
  }

  /**
   * Polls after a random delay up to `jitter` ms, at most one interval (a new leader's first poll comes within a
   * lease and an interval of its predecessor's death), unless a poll is under way; then on schedule.
   */
  pollSoon(jitter = Math.min(this.options.jitter ?? 1000, this.options.interval)): void {
    if (this.stopped || this.inFlight) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), Math.floor(Math.random() * jitter));
  }

  /** One poll; resolves when its result (or failure) has been recorded. */
  poll(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    clearTimeout(this.timer);
    this.inFlight = this.run().finally(() => {
      this.inFlight = undefined;
      // Paused and started again while this poll was under way (leadership lost and taken back): poll soon, its
      // result was not recorded.
      const delay = this.current?.signal.reason === PAUSED ? 0 : this.options.interval;
      if (!this.stopped) this.timer = setTimeout(() => void this.poll(), delay);
    });
    return this.inFlight;
  }

  /** One poll, traced (a root span: its gRPC or HTTP calls are its children), never rejecting. */
  private run(): Promise<void> {
    const attributes = { 'dashboard.source': this.name, 'dashboard.breaker': this.status.breaker };
    return withSpan(`poll ${this.name}`, attributes, (span) => this.pollTraced(span), { root: true });
  }

  private async pollTraced(span: Span | undefined): Promise<void> {
    const startedAt = Date.now();
    const started = performance.now();
    const abort = new AbortController();
    this.current = abort;
    const deadline = setTimeout(
      () => abort.abort(new Error(`timed out after ${this.options.timeout}ms`)),
      this.options.timeout,
    );
    let outcome: PollOutcome | 'paused' = 'success';
    try {
      await this.breaker.fire(abort.signal, startedAt);
      this.succeeded(startedAt);
    } catch (error) {
      if (abort.signal.reason === PAUSED) {
        outcome = 'paused';
        span?.setAttribute('dashboard.outcome', outcome);
        return;
      }
      outcome = this.failed(error, abort.signal.aborted);
      // A poll the open circuit refused sent nothing: not a failure of this span, its outcome says why.
      if (outcome !== 'rejected') failSpan(span, this.status.last_error);
    } finally {
      clearTimeout(deadline);
      if (outcome !== 'paused') {
        abort.abort();
        this.counts[outcome]++;
        span?.setAttribute('dashboard.outcome', outcome);
        this.options.onPoll?.(this.name, outcome, (performance.now() - started) / 1000);
      }
    }
  }

  private succeeded(at: number): void {
    const wasOk = this.status.status === 'ok';
    this.status.status = 'ok';
    this.status.last_success = new Date(at).toISOString();
    this.status.stale_since = null;
    if (!wasOk) this.options.logger.info({ source: this.name }, `backend ${this.name}: polling succeeds`);
    this.options.onStatus(this.name, this.status);
  }

  private failed(error: unknown, timedOut: boolean): PollOutcome {
    const rejected = (error as { code?: string }).code === 'EOPENBREAKER';
    const timeout = timedOut || (error as { code?: string }).code === 'ETIMEDOUT';
    const message = rejected
      ? 'circuit open: no request sent'
      : timeout
        ? `timed out after ${this.options.timeout}ms`
        : (error as Error).message;
    const before = this.status.status;
    this.status.status = this.breaker.opened ? 'down' : 'degraded';
    this.status.stale_since ??= new Date().toISOString();
    if (!rejected) this.status.last_error = message;
    const changed = before !== this.status.status;
    if (changed) {
      this.options.logger.warn(
        { source: this.name, err: message },
        `backend ${this.name}: poll failed; keeping last known data`,
      );
    }
    if (changed || !rejected) this.options.onStatus(this.name, this.status);
    return rejected ? 'rejected' : timeout ? 'timeout' : 'failure';
  }

  private setBreaker(state: BreakerState): void {
    if (this.status.breaker === state) return;
    this.status.breaker = state;
    if (state === 'open') {
      this.status.status = 'down';
      this.options.logger.warn(
        { source: this.name, err: this.status.last_error },
        `backend ${this.name}: circuit open; no requests until a probe in ${this.options.breaker.reset_timeout}ms`,
      );
    }
    this.options.onStatus(this.name, this.status);
  }
}

/**
 * A plain copy of a status for the state, which must never share objects with a mutable source. Null fields
 * are left out (absent = none): a merge patch cannot carry a null value, so a view kept by diffs would lose them.
 */
export function statusRecord(status: SourceStatus): JsonObject {
  const record: JsonObject = {};
  for (const [key, value] of Object.entries(status)) if (value !== null) record[key] = value;
  return record;
}
