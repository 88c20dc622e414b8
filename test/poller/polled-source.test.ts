import assert from 'node:assert/strict';
import { once } from 'node:events';
import { afterEach, describe, test } from 'node:test';
import type { BreakerConfig } from '../../src/config/schema.ts';
import {
  PolledSource,
  type PolledSourceOptions,
  type PollOutcome,
  type SourceStatus,
  statusRecord,
} from '../../src/poller.ts';

/**
 * Unit tests of PolledSource (src/poller.ts) with a fetch function the test controls: no network. The interval
 * is an hour unless a test is about the schedule, so polls happen when the test calls poll() (or when the
 * breaker's half-open probe triggers one).
 */

type Mode = 'ok' | 'fail' | 'hang' | 'ignore-signal' | 'slow';

/** A stand-in backend: answers according to `mode`; counts calls and how many run at once. */
class FakeBackend {
  mode: Mode = 'ok';
  value: { n: number } = { n: 1 };
  calls = 0;
  active = 0;
  maxActive = 0;
  readonly signals: AbortSignal[] = [];

  fetch = (signal: AbortSignal): Promise<{ n: number }> => {
    this.calls++;
    this.signals.push(signal);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    const done = <T>(promise: Promise<T>) =>
      promise.finally(() => {
        this.active--;
      });
    const value = { ...this.value };
    switch (this.mode) {
      case 'ok':
        return done(Promise.resolve(value));
      case 'fail':
        return done(Promise.reject(new Error('backend says no')));
      case 'slow':
        // A backend that takes a little while: its own latency, not the test's synchronization.
        return done(new Promise((resolve) => setTimeout(() => resolve(value), 15)));
      case 'hang':
        // Never answers, but gives up when the poller aborts, as undici and grpc-js do.
        return done(
          new Promise((_, reject) =>
            signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
          ),
        );
      case 'ignore-signal':
        return new Promise(() => {});
    }
  };
}

interface Harness {
  source: PolledSource<{ n: number }>;
  backend: FakeBackend;
  statuses: SourceStatus[];
  polls: { outcome: PollOutcome; seconds: number }[];
  applied: { result: { n: number }; startedAt: number }[];
  recovered: string[];
  warnings: string[];
  infos: string[];
  /** Resolves with the outcome of the next poll recorded. */
  nextPoll(timeoutMs?: number): Promise<PollOutcome>;
}

const BREAKER: BreakerConfig = {
  error_threshold_percentage: 50,
  volume_threshold: 2,
  reset_timeout: 100,
  rolling_window: 10_000,
};

const started: PolledSource<{ n: number }>[] = [];
afterEach(() => {
  for (const source of started.splice(0)) source.stop();
});

function harness(options: Partial<PolledSourceOptions<{ n: number }>> = {}): Harness {
  const backend = new FakeBackend();
  const waiters: ((outcome: PollOutcome) => void)[] = [];
  const h: Omit<Harness, 'source'> = {
    backend,
    statuses: [],
    polls: [],
    applied: [],
    recovered: [],
    warnings: [],
    infos: [],
    nextPoll: (timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no poll within ${timeoutMs}ms`)), timeoutMs);
        waiters.push((outcome) => {
          clearTimeout(timer);
          resolve(outcome);
        });
      }),
  };
  const source = new PolledSource<{ n: number }>({
    name: 'strategy_engine',
    interval: 3_600_000,
    timeout: 50,
    breaker: BREAKER,
    fetch: backend.fetch,
    apply: (result, startedAt) => h.applied.push({ result, startedAt }),
    onStatus: (name, status) => {
      assert.equal(name, 'strategy_engine');
      h.statuses.push({ ...status });
    },
    onPoll: (name, outcome, seconds) => {
      assert.equal(name, 'strategy_engine');
      h.polls.push({ outcome, seconds });
      for (const wake of waiters.splice(0)) wake(outcome);
    },
    onRecovered: (name) => h.recovered.push(name),
    logger: {
      warn: (_object, message) => h.warnings.push(message),
      info: (_object, message) => h.infos.push(message),
    },
    jitter: 0,
    ...options,
  });
  started.push(source);
  return { ...h, source };
}

describe('PolledSource: one poll', () => {
  test('before any poll: down, breaker closed, no times', () => {
    const { source } = harness();
    assert.deepEqual(source.status, {
      status: 'down',
      breaker: 'closed',
      last_success: null,
      last_error: null,
      stale_since: null,
    });
    assert.deepEqual(source.counts, { success: 0, failure: 0, timeout: 0, rejected: 0 });
  });

  test('a success applies the result with the time the poll began, and reports ok', async () => {
    const h = harness();
    h.backend.value = { n: 7 };
    const before = Date.now();
    await h.source.poll();
    const afterPoll = Date.now();
    assert.equal(h.applied.length, 1);
    assert.deepEqual(h.applied[0].result, { n: 7 });
    assert.ok(h.applied[0].startedAt >= before && h.applied[0].startedAt <= afterPoll);
    assert.equal(h.source.status.status, 'ok');
    assert.equal(h.source.status.last_success, new Date(h.applied[0].startedAt).toISOString());
    assert.equal(h.source.status.stale_since, null);
    assert.deepEqual(h.source.counts, { success: 1, failure: 0, timeout: 0, rejected: 0 });
    assert.equal(h.polls.length, 1);
    assert.equal(h.polls[0].outcome, 'success');
    assert.ok(h.polls[0].seconds >= 0 && h.polls[0].seconds < 1);
    assert.equal(h.statuses.at(-1)?.status, 'ok');
    assert.equal(h.infos.length, 1, 'recovery to ok is logged once');
    assert.ok(h.backend.signals[0].aborted, 'the signal is released (aborted) once the poll is done');
  });

  test('a failure keeps nothing new, reports degraded with the error, and marks the data stale once', async () => {
    const h = harness({ breaker: { ...BREAKER, volume_threshold: 100 } });
    await h.source.poll();
    h.backend.mode = 'fail';
    await h.source.poll();
    assert.equal(h.applied.length, 1, 'nothing applied by the failed poll');
    assert.equal(h.source.status.status, 'degraded');
    assert.equal(h.source.status.last_error, 'backend says no');
    const staleSince = h.source.status.stale_since;
    assert.equal(typeof staleSince, 'string');
    assert.equal(h.warnings.length, 1);
    assert.equal(h.polls.at(-1)?.outcome, 'failure');

    // A second failure: same stale_since (stale since the first), no second warning (no change of status).
    const statusesBefore = h.statuses.length;
    await h.source.poll();
    assert.equal(h.source.status.stale_since, staleSince);
    assert.equal(h.warnings.length, 1, 'a failure that changes nothing is not logged again');
    assert.equal(h.statuses.length, statusesBefore + 1, 'the new error is reported');
    assert.deepEqual(h.source.counts, { success: 1, failure: 2, timeout: 0, rejected: 0 });

    // Recovery clears stale_since and keeps the last error for the record.
    h.backend.mode = 'ok';
    await h.source.poll();
    assert.equal(h.source.status.status, 'ok');
    assert.equal(h.source.status.stale_since, null);
    assert.equal(h.source.status.last_error, 'backend says no');
  });

  test('an apply that throws (the ingest rejecting the records) is a failure', async () => {
    const h = harness({
      apply: () => {
        throw new Error('invalid orders payload: /symbol');
      },
    });
    await h.source.poll();
    assert.equal(h.source.status.status, 'degraded');
    assert.equal(h.source.status.last_error, 'invalid orders payload: /symbol');
    assert.equal(h.source.counts.failure, 1);
    assert.equal(h.polls[0].outcome, 'failure');
  });

  test('a hanging backend is aborted at `timeout`: a timeout, not a failure', async () => {
    const h = harness({ timeout: 60 });
    h.backend.mode = 'hang';
    await h.source.poll();
    assert.deepEqual(h.source.counts, { success: 0, failure: 0, timeout: 1, rejected: 0 });
    assert.equal(h.source.status.last_error, 'timed out after 60ms');
    assert.equal(h.source.status.status, 'degraded');
    assert.ok(h.backend.signals[0].aborted, 'the fetch was told to stop');
    assert.match(String((h.backend.signals[0].reason as Error).message), /timed out after 60ms/);
    assert.equal(h.backend.active, 0, 'the call ended');
    // Ended by the abort at `timeout`, well before the breaker's own backstop (timeout + 250 ms).
    assert.ok(h.polls[0].seconds >= 0.05 && h.polls[0].seconds < 0.3, `took ${h.polls[0].seconds}s`);
  });

  test("a fetch that ignores the signal is cut off by the breaker's own timer, still a timeout", async () => {
    const h = harness({ timeout: 20 });
    h.backend.mode = 'ignore-signal';
    await h.source.poll();
    assert.equal(h.source.counts.timeout, 1);
    assert.equal(h.source.status.last_error, 'timed out after 20ms');
    assert.ok(
      h.polls[0].seconds >= 0.25,
      `the backstop fired after timeout + 250 ms (${h.polls[0].seconds}s)`,
    );
  });

  test('poll() while a poll is under way joins it: one request, never two at once', async () => {
    const h = harness();
    h.backend.mode = 'slow';
    const first = h.source.poll();
    const second = h.source.poll();
    assert.equal(first, second, 'the same promise');
    await Promise.all([first, second]);
    assert.equal(h.backend.calls, 1);
    assert.equal(h.source.counts.success, 1);
  });

  test('statusRecord is a copy that later changes of the source do not reach', async () => {
    const h = harness();
    await h.source.poll();
    const record = statusRecord(h.source.status);
    // The null fields of the live status are left out of the record: absent means none.
    assert.deepEqual(record, { status: 'ok', breaker: 'closed', last_success: h.source.status.last_success });
    h.backend.mode = 'fail';
    await h.source.poll();
    assert.equal(record.status, 'ok');
    assert.equal(Object.hasOwn(record, 'last_error'), false);
  });
});

describe('PolledSource: the breaker', () => {
  /** Fails polls until the breaker opens; returns how many it took. */
  async function openBreaker(h: Harness): Promise<number> {
    h.backend.mode = 'fail';
    let polls = 0;
    while (!h.source.breaker.opened) {
      assert.ok(polls < 5, 'the breaker opens within a few failures');
      await h.source.poll();
      polls++;
    }
    return polls;
  }

  test('opens after volume_threshold polls above the error percentage: status down, breaker open', async () => {
    const h = harness();
    assert.equal(await openBreaker(h), 2, 'two failures of two polls');
    assert.equal(h.source.status.status, 'down');
    assert.equal(h.source.status.breaker, 'open');
    assert.equal(h.statuses.at(-1)?.breaker, 'open');
  });

  test('does not open below volume_threshold or at exactly the error percentage', async () => {
    const h = harness({ breaker: { ...BREAKER, volume_threshold: 3 } });
    h.backend.mode = 'fail';
    await h.source.poll();
    await h.source.poll();
    assert.equal(h.source.breaker.opened, false, 'two failures are below a volume threshold of three');
    assert.equal(h.source.status.status, 'degraded');

    const even = harness();
    await even.source.poll(); // success
    even.backend.mode = 'fail';
    await even.source.poll(); // 1 of 2 failed: 50 %, not above 50 %
    assert.equal(even.source.breaker.opened, false);
  });

  test('while open, polls are rejected without calling the backend; the real error is kept', async () => {
    const h = harness({ breaker: { ...BREAKER, reset_timeout: 60_000 } });
    await openBreaker(h);
    const calls = h.backend.calls;
    const statuses = h.statuses.length;
    const lastError = h.source.status.last_error;
    const staleSince = h.source.status.stale_since;
    for (let i = 0; i < 3; i++) await h.source.poll();
    assert.equal(h.backend.calls, calls, 'no call reached the backend');
    assert.equal(h.source.counts.rejected, 3);
    assert.deepEqual(
      h.polls.slice(-3).map((p) => p.outcome),
      ['rejected', 'rejected', 'rejected'],
    );
    assert.equal(h.source.status.last_error, lastError, 'not replaced by "circuit open"');
    assert.equal(h.source.status.stale_since, staleSince);
    assert.equal(h.source.status.status, 'down');
    assert.equal(h.statuses.length, statuses, 'a rejection that changes nothing reports nothing');
  });

  test('after reset_timeout a probe is sent at once; success closes the breaker and reports recovery', async () => {
    const h = harness();
    h.source.start();
    await h.nextPoll(); // the start poll (jitter 0)
    await openBreaker(h);
    const calls = h.backend.calls;
    h.backend.mode = 'ok';
    h.backend.value = { n: 2 };
    const halfOpen = once(h.source.breaker, 'halfOpen');
    const probe = h.nextPoll();
    await halfOpen;
    assert.equal(h.source.status.breaker, 'half_open');
    assert.equal(h.statuses.at(-1)?.breaker, 'half_open', 'half-open is reported');
    assert.equal(await probe, 'success', 'the probe went out without waiting for the interval (an hour)');
    assert.equal(h.backend.calls, calls + 1, 'one probe');
    assert.equal(h.source.status.breaker, 'closed');
    assert.equal(h.source.status.status, 'ok');
    assert.deepEqual(h.recovered, ['strategy_engine']);
    assert.deepEqual(h.applied.at(-1)?.result, { n: 2 });
  });

  test('a failed probe opens the breaker again; no recovery is reported', async () => {
    const h = harness();
    h.source.start();
    await h.nextPoll();
    await openBreaker(h);
    const calls = h.backend.calls;
    const reopened = once(h.source.breaker, 'open');
    const probe = h.nextPoll();
    await once(h.source.breaker, 'halfOpen');
    assert.equal(await probe, 'failure');
    await reopened;
    assert.equal(h.backend.calls, calls + 1, 'exactly one probe');
    assert.equal(h.source.status.breaker, 'open');
    assert.equal(h.source.status.status, 'down');
    assert.deepEqual(h.recovered, []);

    // The next probe succeeds.
    h.backend.mode = 'ok';
    const closed = once(h.source.breaker, 'close');
    const secondProbe = h.nextPoll();
    await closed;
    assert.equal(await secondProbe, 'success');
    assert.equal(h.source.status.status, 'ok');
    assert.deepEqual(h.recovered, ['strategy_engine']);
  });

  test('a hanging probe times out and opens the breaker again', async () => {
    const h = harness({ timeout: 30 });
    h.source.start();
    await h.nextPoll();
    await openBreaker(h);
    h.backend.mode = 'hang';
    const probe = h.nextPoll();
    await once(h.source.breaker, 'halfOpen');
    assert.equal(await probe, 'timeout');
    assert.equal(h.source.breaker.opened, true);
    assert.equal(h.source.status.status, 'down');
    assert.equal(h.source.status.last_error, 'timed out after 30ms');
  });
});

describe('PolledSource: the schedule', () => {
  test('start() polls, then again `interval` after each poll ends, never two at once', async () => {
    const h = harness({ interval: 20 });
    h.backend.mode = 'slow';
    h.source.start();
    for (let i = 0; i < 4; i++) assert.equal(await h.nextPoll(), 'success');
    assert.equal(h.backend.maxActive, 1, 'polls of one source never overlap');
    assert.ok(h.backend.calls >= 4);
  });

  test('stop() ends the schedule and shuts the breaker: a later poll sends nothing', async () => {
    const h = harness({ interval: 20 });
    // A second source on the same schedule serves as the clock: while it polls five times, the stopped one
    // would have polled too, had stop() not ended its schedule.
    const witness = harness({ interval: 20 });
    h.source.start();
    await h.nextPoll();
    h.source.stop();
    const calls = h.backend.calls;
    witness.source.start();
    for (let i = 0; i < 5; i++) await witness.nextPoll();
    assert.equal(h.backend.calls, calls, 'no poll after stop()');
    h.source.pollSoon(0);
    await h.source.poll();
    assert.equal(h.backend.calls, calls, 'the breaker is shut: nothing is sent');
  });

  test('pollSoon() while a poll is under way does not start another', async () => {
    const h = harness();
    h.backend.mode = 'slow';
    h.source.start();
    const first = h.nextPoll();
    // start() scheduled the first poll on a 0 ms timer; poll() now starts it at once.
    const running = h.source.poll();
    h.source.pollSoon(0);
    h.source.pollSoon(0);
    await running;
    assert.equal(await first, 'success');
    assert.equal(h.backend.calls, 1);
    assert.equal(h.backend.maxActive, 1);
  });
});
