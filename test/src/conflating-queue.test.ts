import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConflatingQueue, type ConflatingQueueOptions } from '../../src/conflating-queue.ts';

/** A queue whose turns run only when the test says so, with a clock the test moves. */
function setup(options: Partial<ConflatingQueueOptions<string>> = {}) {
  const handled: [string, string][] = [];
  const dropped: string[] = [];
  const conflated: string[] = [];
  const scheduled: { turn: () => void; delayMs: number }[] = [];
  const clock = { now: 0 };
  const queue = new ConflatingQueue<string>({
    maxBytes: 100,
    turnBytes: 30,
    handle: (key, value) => handled.push([key, value]),
    onDrop: (key, value) => dropped.push(`${key}=${value}`),
    onConflate: (key) => conflated.push(key),
    schedule: (turn, delayMs) => scheduled.push({ turn, delayMs }),
    now: () => clock.now,
    ...options,
  });
  /** Runs the turn scheduled next; returns its delay. */
  const runNext = () => {
    const next = scheduled.shift();
    assert.ok(next, 'a turn is scheduled');
    next.turn();
    return next.delayMs;
  };
  return { queue, handled, dropped, conflated, scheduled, clock, runNext };
}

describe('ConflatingQueue', () => {
  test('the latest value of a key wins, counted as conflated, and keeps the key its place in line', () => {
    const { queue, handled, conflated, runNext } = setup({ turnBytes: 1000 });
    queue.push('orderbook:A', 'a1', 10);
    queue.push('orderbook:B', 'b1', 10);
    queue.push('orderbook:A', 'a2', 20);
    assert.deepEqual(conflated, ['orderbook:A']);
    assert.deepEqual(queue.stats, {
      pending: 2,
      pendingBytes: 30,
      conflated: 1,
      dropped: 0,
      handled: 0,
      turns: 0,
    });
    runNext();
    assert.deepEqual(handled, [
      ['orderbook:A', 'a2'],
      ['orderbook:B', 'b1'],
    ]);
    assert.equal(queue.stats.pendingBytes, 0);
  });

  test('keys are served oldest first (FIFO across keys)', () => {
    const { queue, handled, runNext } = setup({ turnBytes: 1000 });
    for (const key of ['C', 'A', 'B']) queue.push(key, key.toLowerCase(), 1);
    runNext();
    assert.deepEqual(
      handled.map(([key]) => key),
      ['C', 'A', 'B'],
    );
  });

  test('past maxBytes the oldest entries are dropped and counted, never the one just pushed', () => {
    const { queue, dropped, handled, runNext } = setup();
    queue.push('A', 'a', 40);
    queue.push('B', 'b', 40);
    queue.push('C', 'c', 40);
    assert.deepEqual(dropped, ['A=a']);
    assert.equal(queue.stats.dropped, 1);
    assert.equal(queue.stats.pendingBytes, 80);
    // Larger than the bound alone: everything else goes, it stays.
    queue.push('D', 'd', 150);
    assert.deepEqual(dropped, ['A=a', 'B=b', 'C=c']);
    assert.deepEqual(queue.stats.pending, 1);
    runNext();
    assert.deepEqual(handled, [['D', 'd']]);
  });

  test('a replaced value counts its new size against the bound', () => {
    const { queue, dropped } = setup();
    queue.push('A', 'a1', 10);
    queue.push('B', 'b1', 10);
    queue.push('B', 'b2', 95);
    // B keeps its place (after A); A is the oldest and goes.
    assert.deepEqual(dropped, ['A=a1']);
    assert.equal(queue.stats.pendingBytes, 95);
  });

  test('each turn hands out about turnBytes, at least one entry, and schedules the next while work is left', () => {
    const { queue, handled, scheduled, runNext } = setup({ turnBytes: 40, maxBytes: 1000 });
    for (let i = 0; i < 5; i++) queue.push(`K${i}`, `v${i}`, 20);
    queue.push('BIG', 'big', 500);
    // One turn scheduled, however many pushes.
    assert.equal(scheduled.length, 1);
    runNext();
    assert.deepEqual(
      handled.map(([key]) => key),
      ['K0', 'K1'],
    );
    runNext();
    runNext();
    assert.deepEqual(
      handled.map(([key]) => key),
      ['K0', 'K1', 'K2', 'K3', 'K4'],
    );
    // An entry over turnBytes alone still goes, alone.
    runNext();
    assert.deepEqual(handled.at(-1), ['BIG', 'big']);
    assert.equal(scheduled.length, 0);
    assert.equal(queue.stats.turns, 4);
    assert.equal(queue.stats.handled, 6);
  });

  test('after a costly turn the next waits restRatio times as long; a cheap one does not wait', () => {
    const { queue, clock, runNext } = setup({
      restRatio: 1,
      turnBytes: 1,
      maxBytes: 1000,
      handle: (key) => {
        clock.now += key === 'slow' ? 50 : 0.2;
      },
    });
    queue.push('slow', 's', 1);
    queue.push('fast', 'f', 1);
    queue.push('last', 'l', 1);
    assert.equal(runNext(), 0);
    assert.equal(runNext(), 50);
    assert.equal(runNext(), 0);
  });

  test('a value pushed while its key is being handled waits for the next turn', () => {
    const { queue, handled, scheduled, runNext } = setup({
      turnBytes: 1000,
      handle: (key, value) => {
        handled.push([key, value]);
        if (value === 'a1') queue.push('A', 'a2', 1);
      },
    });
    queue.push('A', 'a1', 1);
    runNext();
    assert.deepEqual(handled, [['A', 'a1']]);
    assert.equal(scheduled.length, 1);
    runNext();
    assert.deepEqual(handled.at(-1), ['A', 'a2']);
  });

  test('has() tells whether a key is pending', () => {
    const { queue, runNext } = setup();
    assert.equal(queue.has('A'), false);
    queue.push('A', 'a', 1);
    assert.equal(queue.has('A'), true);
    runNext();
    assert.equal(queue.has('A'), false);
  });

  test('close() drops what is pending and runs nothing more', () => {
    const { queue, handled, scheduled } = setup();
    queue.push('A', 'a', 1);
    queue.close();
    scheduled.shift()?.turn();
    queue.push('B', 'b', 1);
    assert.deepEqual(handled, []);
    assert.equal(scheduled.length, 0);
    assert.equal(queue.stats.pending, 0);
  });

  test('a throwing handler does not stop the turns', () => {
    const { queue, handled, scheduled } = setup({
      turnBytes: 2,
      handle: (key, value) => {
        if (key === 'bad') throw new Error('boom');
        handled.push([key, value]);
      },
    });
    queue.push('bad', 'x', 1);
    queue.push('good', 'y', 1);
    queue.push('later', 'z', 1);
    // The rest of the turn is handled, then the error surfaces; the next turn is scheduled all the same.
    assert.throws(() => scheduled.shift()!.turn(), /boom/);
    assert.deepEqual(handled, [['good', 'y']]);
    scheduled.shift()!.turn();
    assert.deepEqual(handled, [
      ['good', 'y'],
      ['later', 'z'],
    ]);
  });

  test('the default scheduler runs turns on the event loop', async () => {
    const handled: string[] = [];
    const { promise, resolve } = Promise.withResolvers<void>();
    const queue = new ConflatingQueue<string>({
      maxBytes: 100,
      turnBytes: 1,
      handle: (key) => {
        handled.push(key);
        if (handled.length === 2) resolve();
      },
    });
    queue.push('A', 'a', 1);
    queue.push('B', 'b', 1);
    // Nothing runs synchronously: the pusher (the socket's read) goes on first.
    assert.deepEqual(handled, []);
    await promise;
    assert.deepEqual(handled, ['A', 'B']);
  });

  test('refuses bounds that are not positive', () => {
    assert.throws(() => new ConflatingQueue({ maxBytes: 0, turnBytes: 1, handle() {} }), RangeError);
    assert.throws(() => new ConflatingQueue({ maxBytes: 1, turnBytes: 0, handle() {} }), RangeError);
  });
});
