/**
 * HistoryQueue (src/history/queue.ts): rows waiting to be written, per kind, each kind bounded (the oldest dropped
 * and counted), taken oldest first, a failed batch restored in front, and the array compacted after many takes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HistoryQueue } from '../../src/history/queue.ts';
import { HISTORY_KINDS, type HistoryRow } from '../../src/history/rows.ts';

/** A row told apart by `n` (its `ts` is n ms after the epoch). */
const row = (n: number): HistoryRow => ({ ts: new Date(n), n });
const ns = (rows: HistoryRow[]): number[] => rows.map((r) => r.n as number);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe('HistoryQueue', () => {
  test('starts empty, with nothing dropped, for every kind', () => {
    const queue = new HistoryQueue(10);
    assert.equal(queue.total, 0);
    for (const kind of HISTORY_KINDS) {
      assert.equal(queue.length(kind), 0);
      assert.equal(queue.dropped[kind], 0);
      assert.deepEqual(queue.take(kind, 5), []);
    }
  });

  test('take returns the oldest rows first, at most `count`, and removes them', () => {
    const queue = new HistoryQueue(100);
    for (const n of range(0, 5)) queue.push('trades', row(n));
    assert.equal(queue.length('trades'), 5);
    assert.deepEqual(ns(queue.take('trades', 2)), [0, 1]);
    assert.equal(queue.length('trades'), 3);
    assert.deepEqual(ns(queue.take('trades', 10)), [2, 3, 4]);
    assert.equal(queue.length('trades'), 0);
    assert.deepEqual(queue.take('trades', 1), []);
    assert.deepEqual(queue.take('trades', 0), []);
  });

  test('each kind has its own list, length and bound; total adds them up', () => {
    const queue = new HistoryQueue(2);
    queue.push('trades', row(1));
    queue.push('fills', row(2));
    queue.push('fills', row(3));
    queue.push('fills', row(4));
    assert.equal(queue.length('trades'), 1);
    assert.equal(queue.length('fills'), 2);
    assert.equal(queue.length('orders'), 0);
    assert.equal(queue.total, 3);
    assert.equal(queue.dropped.fills, 1);
    assert.equal(queue.dropped.trades, 0);
    assert.deepEqual(ns(queue.take('trades', 10)), [1]);
    assert.deepEqual(ns(queue.take('fills', 10)), [3, 4]);
  });

  test('past the bound the oldest row goes, and each is counted in dropped[kind]', () => {
    const queue = new HistoryQueue(3);
    for (const n of range(0, 10)) queue.push('market_data', row(n));
    assert.equal(queue.length('market_data'), 3);
    assert.equal(queue.dropped.market_data, 7);
    assert.deepEqual(ns(queue.take('market_data', 10)), [7, 8, 9]);
    // Room again: nothing more is dropped.
    queue.push('market_data', row(10));
    assert.equal(queue.dropped.market_data, 7);
    for (const kind of HISTORY_KINDS) if (kind !== 'market_data') assert.equal(queue.dropped[kind], 0);
  });

  test('restore puts a failed batch back in front of the rows pushed since', () => {
    const queue = new HistoryQueue(100);
    for (const n of range(0, 4)) queue.push('orders', row(n));
    const batch = queue.take('orders', 4);
    queue.push('orders', row(4));
    queue.push('orders', row(5));
    queue.restore('orders', batch);
    assert.equal(queue.length('orders'), 6);
    assert.equal(queue.dropped.orders, 0);
    assert.deepEqual(ns(queue.take('orders', 100)), [0, 1, 2, 3, 4, 5]);
  });

  test('restore after a partial take keeps the rows not taken after the restored ones', () => {
    const queue = new HistoryQueue(100);
    for (const n of range(0, 6)) queue.push('alerts', row(n));
    const batch = queue.take('alerts', 3);
    queue.restore('alerts', batch);
    assert.deepEqual(ns(queue.take('alerts', 100)), [0, 1, 2, 3, 4, 5]);
  });

  test('restore beyond the bound drops the oldest of the batch and counts them', () => {
    const queue = new HistoryQueue(5);
    for (const n of range(0, 5)) queue.push('fills', row(n));
    const batch = queue.take('fills', 5);
    // While the write failed, three newer rows came.
    for (const n of range(5, 8)) queue.push('fills', row(n));
    queue.restore('fills', batch);
    assert.equal(queue.length('fills'), 5);
    assert.equal(queue.dropped.fills, 3);
    assert.deepEqual(ns(queue.take('fills', 100)), [3, 4, 5, 6, 7]);
  });

  test('restore into a full queue keeps nothing of the batch and counts all of it', () => {
    const queue = new HistoryQueue(3);
    for (const n of range(0, 3)) queue.push('account', row(n));
    const batch = queue.take('account', 3);
    for (const n of range(3, 6)) queue.push('account', row(n));
    queue.restore('account', batch);
    assert.equal(queue.dropped.account, 3);
    assert.deepEqual(ns(queue.take('account', 100)), [3, 4, 5]);
  });

  test('restore of an empty batch changes nothing', () => {
    const queue = new HistoryQueue(3);
    queue.push('trades', row(1));
    queue.restore('trades', []);
    assert.equal(queue.length('trades'), 1);
    assert.equal(queue.dropped.trades, 0);
    assert.deepEqual(ns(queue.take('trades', 10)), [1]);
  });

  test('order and length stay right across compactions (12,000 rows pushed and taken in uneven steps)', () => {
    const queue = new HistoryQueue(100_000);
    let pushed = 0;
    let taken = 0;
    const out: number[] = [];
    // Push faster than take for a while, then drain: the head passes 1024 and half the array many times.
    while (pushed < 12_000) {
      for (let i = 0; i < 7 && pushed < 12_000; i++) queue.push('market_data', row(pushed++));
      const rows = queue.take('market_data', 5);
      taken += rows.length;
      out.push(...ns(rows));
      assert.equal(queue.length('market_data'), pushed - taken);
    }
    // A failed batch restored in the middle of it all.
    const batch = queue.take('market_data', 1500);
    queue.restore('market_data', batch);
    assert.equal(queue.length('market_data'), pushed - taken);
    while (queue.length('market_data') > 0) {
      const rows = queue.take('market_data', 333);
      taken += rows.length;
      out.push(...ns(rows));
    }
    assert.equal(taken, 12_000);
    assert.deepEqual(out, range(0, 12_000));
    assert.equal(queue.dropped.market_data, 0);
  });

  test('a full queue pushed 20,000 times keeps the newest rows in order', () => {
    const queue = new HistoryQueue(1000);
    for (const n of range(0, 20_000)) queue.push('trades', row(n));
    assert.equal(queue.length('trades'), 1000);
    assert.equal(queue.dropped.trades, 19_000);
    assert.deepEqual(ns(queue.take('trades', 2000)), range(19_000, 20_000));
    assert.equal(queue.length('trades'), 0);
  });
});
