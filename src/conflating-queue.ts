/**
 * Pending work keyed by channel, where only the latest value of a key matters (a full order book replaces the
 * previous one): a newer value replaces the pending one of its key (conflated) and keeps the key's place in line;
 * keys are served oldest first; the bytes pending are bounded (past the bound the oldest entry is dropped); each
 * turn hands out a bounded amount of work, so that the caller's event loop turns (and reads its sockets) between
 * turns. Knows nothing of Redis or of what the values are.
 */

export interface ConflatingQueueOptions<V> {
  /** Most bytes pending; past it the oldest entries are dropped (never the one just pushed). */
  maxBytes: number;
  /** Work per turn: the entries that fit in this many bytes (or the oldest alone, if it is larger). */
  turnBytes: number;
  /** Handles one entry. It should not throw: the turn's other entries are handled, then the first error rethrown. */
  handle: (key: string, value: V) => void;
  /** A pending value was replaced by a newer one of its key. */
  onConflate?: (key: string) => void;
  /** A pending value was dropped to keep the queue within maxBytes. */
  onDrop?: (key: string, value: V) => void;
  /** Runs `turn` after `delayMs`: setImmediate when 0, setTimeout otherwise. Tests pass their own. */
  schedule?: (turn: () => void, delayMs: number) => void;
  /** Milliseconds, for the pacing of turns: performance.now by default. */
  now?: () => number;
  /**
   * After a turn of `t` ms, the next waits `t * restRatio` ms (when it is over 1 ms), so that a backlog of costly
   * entries leaves the event loop at least that share of the time for I/O. 0: the next turn comes at once.
   */
  restRatio?: number;
}

export interface ConflatingQueueStats {
  /** Entries and bytes pending now. */
  pending: number;
  pendingBytes: number;
  /** Values replaced by a newer one of their key before they were handled. */
  conflated: number;
  /** Values dropped to keep the pending bytes within maxBytes. */
  dropped: number;
  /** Values handed to `handle`. */
  handled: number;
  /** Turns run. */
  turns: number;
}

interface Entry<V> {
  value: V;
  bytes: number;
}

function defaultSchedule(turn: () => void, delayMs: number): void {
  if (delayMs > 0) setTimeout(turn, delayMs);
  else setImmediate(turn);
}

export class ConflatingQueue<V> {
  /** A Map keeps insertion order, and replacing a key's value keeps its place: the oldest key is first. */
  private readonly entries = new Map<string, Entry<V>>();
  private readonly options: ConflatingQueueOptions<V>;
  private readonly schedule: (turn: () => void, delayMs: number) => void;
  private readonly now: () => number;
  private bytes = 0;
  private scheduled = false;
  private closed = false;
  readonly counts = { conflated: 0, dropped: 0, handled: 0, turns: 0 };

  constructor(options: ConflatingQueueOptions<V>) {
    if (!(options.maxBytes > 0) || !(options.turnBytes > 0))
      throw new RangeError('maxBytes and turnBytes must be positive');
    this.options = options;
    this.schedule = options.schedule ?? defaultSchedule;
    this.now = options.now ?? (() => performance.now());
  }

  get stats(): ConflatingQueueStats {
    return { pending: this.entries.size, pendingBytes: this.bytes, ...this.counts };
  }

  /** Whether `key` has a value pending: a later value of that key must go through the queue too, not around it. */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Queues `value` (of `bytes`) for `key`, replacing the pending one of that key; schedules a turn. */
  push(key: string, value: V, bytes: number): void {
    if (this.closed) return;
    const previous = this.entries.get(key);
    if (previous) {
      this.bytes -= previous.bytes;
      previous.value = value;
      previous.bytes = bytes;
      this.counts.conflated++;
      this.options.onConflate?.(key);
    } else {
      this.entries.set(key, { value, bytes });
    }
    this.bytes += bytes;
    this.dropOverflow(key);
    this.wake(0);
  }

  /**
   * Hands out one turn's work now, oldest key first: the entries that fit in turnBytes, or the oldest alone if it
   * does not. A value pushed meanwhile (by a handler) waits for the next turn.
   */
  turn(): number {
    this.counts.turns++;
    const batch: [string, V][] = [];
    let taken = 0;
    for (const [key, entry] of this.entries) {
      if (batch.length > 0 && taken + entry.bytes > this.options.turnBytes) break;
      this.entries.delete(key);
      this.bytes -= entry.bytes;
      taken += entry.bytes;
      batch.push([key, entry.value]);
    }
    let failure: { error: unknown } | undefined;
    for (const [key, value] of batch) {
      this.counts.handled++;
      try {
        this.options.handle(key, value);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
    return batch.length;
  }

  /** Drops everything pending and schedules nothing more (the app is closing). */
  close(): void {
    this.closed = true;
    this.entries.clear();
    this.bytes = 0;
  }

  private dropOverflow(keep: string): void {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.options.maxBytes) return;
      if (key === keep) continue;
      this.entries.delete(key);
      this.bytes -= entry.bytes;
      this.counts.dropped++;
      this.options.onDrop?.(key, entry.value);
    }
  }

  private wake(delayMs: number): void {
    if (this.scheduled || this.closed || this.entries.size === 0) return;
    this.scheduled = true;
    this.schedule(() => this.run(), delayMs);
  }

  private run(): void {
    this.scheduled = false;
    if (this.closed) return;
    const started = this.now();
    try {
      this.turn();
    } finally {
      const rest = (this.now() - started) * (this.options.restRatio ?? 0);
      this.wake(rest >= 1 ? rest : 0);
    }
  }
}
