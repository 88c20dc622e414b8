/**
 * HandoverWindow (src/history/handover.ts): a replica that does not lead keeps the rows of its last `ticks` flush
 * intervals, in order, lets older ones go without counting them as dropped, and after a change of leadership counts
 * what is queued as one interval.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HandoverWindow } from '../../src/history/handover.ts';
import { HistoryQueue } from '../../src/history/queue.ts';
import type { HistoryRow } from '../../src/history/rows.ts';

const row = (n: number): HistoryRow => ({ ts: new Date(n), n });
const ns = (queue: HistoryQueue, kind: 'trades' | 'fills') =>
  queue.take(kind, queue.length(kind)).map((r) => r.n as number);

describe('HandoverWindow', () => {
  test('keeps the rows of the last `ticks` intervals, oldest let go first, none counted as dropped', () => {
    const queue = new HistoryQueue(1000);
    const window = new HandoverWindow(2);
    let n = 0;
    // Interval 1: 3 rows, interval 2: 1 row, interval 3: 2 rows, interval 4: none.
    for (const count of [3, 1, 2, 0]) {
      for (let i = 0; i < count; i++) queue.push('trades', row(n++));
      window.trim(queue);
    }
    // The last two intervals: the 2 rows of interval 3 and none of interval 4.
    assert.equal(queue.length('trades'), 2);
    assert.equal(queue.dropped.trades, 0);
    assert.deepEqual(ns(queue, 'trades'), [4, 5]);
  });

  test('each kind has its own window', () => {
    const queue = new HistoryQueue(1000);
    const window = new HandoverWindow(1);
    queue.push('trades', row(1));
    queue.push('fills', row(2));
    window.trim(queue);
    queue.push('fills', row(3));
    window.trim(queue);
    assert.equal(queue.length('trades'), 0);
    assert.deepEqual(ns(queue, 'fills'), [3]);
  });

  test('after a reset, what was queued is one interval: let go once the window has passed it', () => {
    const queue = new HistoryQueue(1000);
    const window = new HandoverWindow(2);
    // A leader's unwritten rows when it steps down.
    for (let n = 0; n < 5; n++) queue.push('trades', row(n));
    window.reset(queue);
    queue.push('trades', row(5));
    window.trim(queue);
    assert.equal(queue.length('trades'), 6, 'still within the window');
    window.trim(queue);
    assert.deepEqual(ns(queue, 'trades'), [5]);
  });

  test('a window of less than one interval keeps one', () => {
    const queue = new HistoryQueue(1000);
    const window = new HandoverWindow(0);
    queue.push('trades', row(1));
    window.trim(queue);
    assert.equal(queue.length('trades'), 1);
    queue.push('trades', row(2));
    window.trim(queue);
    assert.deepEqual(ns(queue, 'trades'), [2]);
  });
});
