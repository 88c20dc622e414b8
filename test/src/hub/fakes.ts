import { decode } from '../../../src/codec.ts';
import type { HubOptions } from '../../../src/hub/hub.ts';
import type { PhaseClock } from '../../../src/hub/scheduler.ts';
import type { ClientSocket } from '../../../src/hub/session.ts';

type Listener = (...args: never[]) => void;

/** A socket the test controls: what was sent, how it was closed, its buffered amount, and whether send throws. */
export class FakeSocket implements ClientSocket {
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: Buffer[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  terminated = false;
  pings = 0;
  failSend: Error | undefined;
  failPing: Error | undefined;
  private readonly listeners = new Map<string, Listener[]>();

  send(data: Buffer): void {
    if (this.failSend) throw this.failSend;
    this.sent.push(data);
  }
  ping(): void {
    if (this.failPing) throw this.failPing;
    this.pings++;
  }
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
  }
  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason };
    this.readyState = 2;
  }
  on(event: string, listener: Listener): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  }
  /** The messages sent, decoded (JSON). */
  messages(): Record<string, unknown>[] {
    return this.sent.map((frame) => decode(frame, false) as Record<string, unknown>);
  }
  ofType(type: string): Record<string, unknown>[] {
    return this.messages().filter((message) => message.type === type);
  }
}

interface Timer {
  at: number;
  order: number;
  callback: () => void;
}

/** A clock whose time moves only when the test says; timers fire in due order as it passes them. */
export class FakeClock implements PhaseClock {
  time = 0;
  private timers: Timer[] = [];
  private created = 0;

  now(): number {
    return this.time;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const timer = { at: this.time + Math.max(0, ms), order: this.created++, callback };
    this.timers.push(timer);
    return timer;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((timer) => timer !== handle);
  }
  get pending(): number {
    return this.timers.length;
  }
  /** Moves time to `until`, firing every timer due on the way (a callback may move the time itself: a stall). */
  advanceTo(until: number): void {
    for (;;) {
      const next = this.timers
        .filter((timer) => timer.at <= until)
        .sort((a, b) => a.at - b.at || a.order - b.order)[0];
      if (!next) break;
      this.timers = this.timers.filter((timer) => timer !== next);
      this.time = Math.max(this.time, next.at);
      next.callback();
    }
    this.time = Math.max(this.time, until);
  }
}

/** Hub options for unit tests: the shipped cadences, generous limits, a silent logger; `overrides` win. */
export function hubOptions(overrides: Partial<HubOptions> = {}): HubOptions {
  return {
    intervals: { tui: 100, web: 250 },
    pingInterval: 30_000,
    readTimeout: 60_000,
    maxSubscriptions: 50,
    rateLimit: { messagesPerSecond: 1000, burst: 1000, maxViolations: 10, window: 10_000 },
    maxBuffered: 64 * 1024,
    maxLag: 10_000,
    logger: { warn() {}, error() {} },
    ...overrides,
  };
}
