import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SourceStatus } from '../../src/poller.ts';
import { StateStore } from '../../src/state.ts';
import { SystemStatus } from '../../src/system-status.ts';

test('the system topic: one writer, the record of docs/protocol.md, each report a new immutable value', () => {
  const state = new StateStore({ now: () => Date.parse('2026-01-01T00:00:00.000Z') });
  const system = new SystemStatus(state);
  const started = state.get('system');
  assert.deepEqual(started, {
    epoch: state.epoch,
    started_at: '2026-01-01T00:00:00.000Z',
    redis: { status: 'connecting', since: '2026-01-01T00:00:00.000Z' },
  });

  const status: SourceStatus = {
    status: 'degraded',
    breaker: 'closed',
    last_success: null,
    last_error: 'GET /status answered 500',
    stale_since: '2026-01-01T00:00:05.000Z',
  };
  system.reportSource('strategy_engine', status);
  system.reportConnection('redis', 'up', '2026-01-01T00:00:01.000Z');
  status.status = 'ok';
  system.reportSource('risk_manager', status);
  assert.deepEqual(state.get('system'), {
    epoch: state.epoch,
    started_at: '2026-01-01T00:00:00.000Z',
    redis: { status: 'up', since: '2026-01-01T00:00:01.000Z' },
    sources: {
      // Null fields are left out; a later change to the source's object is not seen until it reports again.
      strategy_engine: {
        status: 'degraded',
        breaker: 'closed',
        last_error: 'GET /status answered 500',
        stale_since: '2026-01-01T00:00:05.000Z',
      },
      risk_manager: {
        status: 'ok',
        breaker: 'closed',
        last_error: 'GET /status answered 500',
        stale_since: '2026-01-01T00:00:05.000Z',
      },
    },
  });
  assert.deepEqual(Object.keys(state.get('system') as object), ['epoch', 'started_at', 'redis', 'sources']);
  // The first record was not edited in place: readers that hold it (the journal) keep what it said.
  assert.deepEqual((started as { redis: unknown }).redis, {
    status: 'connecting',
    since: '2026-01-01T00:00:00.000Z',
  });
  assert.equal(state.sequence, 4);
});
