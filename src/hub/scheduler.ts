import { CLIENT_TYPES, type ClientType } from './session.ts';

/** The scheduler's clock and timer: the real ones by default, a fake one in tests. */
export interface PhaseClock {
  /** A monotonic time in ms. */
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const REAL_CLOCK: PhaseClock = {
  now: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface SchedulerOptions {
  /** Broadcast cadence per client type, in ms. */
  intervals: Record<ClientType, number>;
  /** Each interval is cut into this many phases, one timer tick each. */
  phases: number;
  /** Runs one phase of a type's interval. */
  run: (type: ClientType, phase: number) => void;
  clock?: PhaseClock;
}

/**
 * The phase timer. Phases run on a fixed schedule from one timer. setInterval would start each wait after its
 * callback, so a busy loop would lose a few ms per phase and clients would get fewer updates than their cadence.
 * The phase due first runs first; when the loop is saturated (several due), the type furthest behind in
 * proportion to its interval goes first, so both types slow down alike (two timers would take turns, giving the
 * 100 ms type as few phases as the 250 ms one). A type is never counted more than one interval behind: after a
 * stall it catches up one interval at most, not a burst.
 */
export class PhaseScheduler {
  private readonly options: SchedulerOptions;
  private readonly clock: PhaseClock;
  readonly phases: number;
  /** When each type's next phase is due, and which phase of its interval that is. */
  private readonly due: Record<ClientType, number> = { tui: 0, web: 0 };
  private readonly nextPhase: Record<ClientType, number> = { tui: 0, web: 0 };
  private timer: unknown;
  private running = false;

  constructor(options: SchedulerOptions) {
    this.options = options;
    this.clock = options.clock ?? REAL_CLOCK;
    this.phases = options.phases;
  }

  start(): void {
    const now = this.clock.now();
    for (const type of CLIENT_TYPES) this.due[type] = now + this.phaseLength(type);
    this.running = true;
    this.arm();
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The phase of `type` to run now; the next call returns the one after it (round the interval). */
  advance(type: ClientType): number {
    const phase = this.nextPhase[type];
    this.nextPhase[type] = (phase + 1) % this.phases;
    return phase;
  }

  private phaseLength(type: ClientType): number {
    return this.options.intervals[type] / this.phases;
  }

  /** The type whose phase runs next: the earliest due, or, of those already due, the furthest behind. */
  private nextType(now: number): ClientType {
    const { tui, web } = this.due;
    const behind = (type: ClientType) => (now - this.due[type]) / this.options.intervals[type];
    if (tui <= now || web <= now) return behind('tui') >= behind('web') ? 'tui' : 'web';
    return tui <= web ? 'tui' : 'web';
  }

  private arm(): void {
    const now = this.clock.now();
    const type = this.nextType(now);
    this.timer = this.clock.setTimeout(
      () => {
        this.options.run(type, this.advance(type));
        if (!this.running) return; // stopped during the phase
        const interval = this.options.intervals[type];
        this.due[type] = Math.max(this.due[type] + this.phaseLength(type), this.clock.now() - interval);
        this.arm();
      },
      Math.max(0, this.due[type] - now),
    );
  }
}
