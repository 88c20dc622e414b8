import type { HistoryQueue } from './queue.ts';
import { HISTORY_KINDS, perKind } from './rows.ts';

/**
 * What a replica that does not lead keeps of its recorded rows: those queued during the last `ticks` flush intervals,
 * none written. The window covers a lease and more, so a replica that takes over writes the rows of the seconds its
 * dead predecessor had not written; rows that one had written are skipped by PostgreSQL (every table has a primary key
 * made of the rows' own times and ids, and inserts are ON CONFLICT DO NOTHING).
 */
export class HandoverWindow {
  private readonly ticks: number;
  /** Rows queued in each of the last intervals, oldest first, by kind. */
  private readonly marks = perKind((): number[] => []);
  /** The queue's length per kind after the last trim. */
  private readonly lengths = perKind(() => 0);

  constructor(ticks: number) {
    this.ticks = Math.max(1, ticks);
  }

  /** Ends an interval: the rows queued before the window are let go (not written, not counted as dropped). */
  trim(queue: HistoryQueue): void {
    for (const kind of HISTORY_KINDS) {
      const marks = this.marks[kind];
      marks.push(Math.max(0, queue.length(kind) - this.lengths[kind]));
      while (marks.length > this.ticks) queue.take(kind, marks.shift() ?? 0);
      this.lengths[kind] = queue.length(kind);
    }
  }

  /** Leadership changed: whatever is queued counts as this interval's rows. */
  reset(queue: HistoryQueue): void {
    for (const kind of HISTORY_KINDS) {
      this.marks[kind] = [queue.length(kind)];
      this.lengths[kind] = queue.length(kind);
    }
  }
}
