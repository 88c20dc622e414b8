/** Rows waiting to be written, per kind, each kind bounded: past the bound the oldest rows go, counted. */
import { HISTORY_KINDS, type HistoryKind, type HistoryRow, perKind } from './rows.ts';

/** One kind's rows, oldest first: an array read from `head`, compacted when half of it is consumed. */
class RowList {
  private rows: HistoryRow[] = [];
  private head = 0;

  get length(): number {
    return this.rows.length - this.head;
  }

  push(row: HistoryRow): void {
    this.rows.push(row);
  }

  /** Removes and returns up to `count` of the oldest rows. */
  take(count: number): HistoryRow[] {
    const taken = this.rows.slice(this.head, this.head + count);
    this.head += taken.length;
    if (this.head > 1024 && this.head * 2 > this.rows.length) {
      this.rows = this.rows.slice(this.head);
      this.head = 0;
    }
    return taken;
  }

  /** Puts `rows` (older than every row held) back in front. */
  restore(rows: HistoryRow[]): void {
    this.rows = [...rows, ...this.rows.slice(this.head)];
    this.head = 0;
  }

  /** Drops the `count` oldest rows. */
  drop(count: number): void {
    this.take(count);
  }
}

export class HistoryQueue {
  /** Rows dropped because their kind's queue was full, by kind (dashboard_history_dropped_total). */
  readonly dropped: Record<HistoryKind, number>;
  private readonly lists: Record<HistoryKind, RowList>;
  private readonly maxRows: number;

  constructor(maxRows: number) {
    this.maxRows = maxRows;
    this.lists = perKind(() => new RowList());
    this.dropped = perKind(() => 0);
  }

  push(kind: HistoryKind, row: HistoryRow): void {
    const list = this.lists[kind];
    if (list.length >= this.maxRows) {
      list.drop(1);
      this.dropped[kind]++;
    }
    list.push(row);
  }

  /** Removes and returns up to `count` of the oldest rows of `kind`. */
  take(kind: HistoryKind, count: number): HistoryRow[] {
    return this.lists[kind].take(count);
  }

  /** Puts rows that could not be written back in front (they are the oldest), within the bound. */
  restore(kind: HistoryKind, rows: HistoryRow[]): void {
    const list = this.lists[kind];
    const room = Math.max(0, this.maxRows - list.length);
    const kept = rows.length > room ? rows.slice(rows.length - room) : rows;
    this.dropped[kind] += rows.length - kept.length;
    if (kept.length > 0) list.restore(kept);
  }

  length(kind: HistoryKind): number {
    return this.lists[kind].length;
  }

  /** Rows waiting, of every kind. */
  get total(): number {
    let total = 0;
    for (const kind of HISTORY_KINDS) total += this.lists[kind].length;
    return total;
  }
}
