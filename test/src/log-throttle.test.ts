import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LogThrottle } from '../../src/log-throttle.ts';

function clock(start = 1_000_000) {
  let time = start;
  return {
    now: () => time,
    advance: (ms: number) => {
      time += ms;
    },
  };
}

describe('LogThrottle', () => {
  test('lets the first line of a key through with nothing suppressed', () => {
    const { now } = clock();
    const throttle = new LogThrottle(1000, now);
    assert.equal(throttle.allow('a'), 0);
  });

  test('holds back lines within the window and reports the count after it', () => {
    const time = clock();
    const throttle = new LogThrottle(1000, time.now);
    assert.equal(throttle.allow('a'), 0);
    time.advance(10);
    assert.equal(throttle.allow('a'), undefined);
    time.advance(500);
    assert.equal(throttle.allow('a'), undefined);
    time.advance(489); // 999 ms after the first line
    assert.equal(throttle.allow('a'), undefined);
    time.advance(1); // exactly one window later
    assert.equal(throttle.allow('a'), 3);
    // The count restarts, and so does the window.
    assert.equal(throttle.allow('a'), undefined);
    time.advance(1000);
    assert.equal(throttle.allow('a'), 1);
    time.advance(5000);
    assert.equal(throttle.allow('a'), 0);
  });

  test('keys are independent', () => {
    const time = clock();
    const throttle = new LogThrottle(1000, time.now);
    assert.equal(throttle.allow('a'), 0);
    assert.equal(throttle.allow('b'), 0);
    assert.equal(throttle.allow('a'), undefined);
    assert.equal(throttle.allow('a'), undefined);
    assert.equal(throttle.allow('b'), undefined);
    time.advance(1000);
    assert.equal(throttle.allow('a'), 2);
    assert.equal(throttle.allow('b'), 1);
    assert.equal(throttle.allow('c'), 0);
  });

  test('the window is configurable', () => {
    const time = clock();
    const throttle = new LogThrottle(50, time.now);
    assert.equal(throttle.allow('k'), 0);
    assert.equal(throttle.allow('k'), undefined);
    time.advance(50);
    assert.equal(throttle.allow('k'), 1);
  });

  test('defaults to a one-second window on the real clock', () => {
    const throttle = new LogThrottle();
    assert.equal(throttle.allow('x'), 0);
    assert.equal(throttle.allow('x'), undefined);
  });
});
