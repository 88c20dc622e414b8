import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Hub } from '../../../src/hub/hub.ts';
import type { HubClient } from '../../../src/hub/session.ts';
import { StateStore } from '../../../src/state.ts';
import { FakeSocket, hubOptions } from './fakes.ts';

/** HubObserver.left: what plugins/fleet-limits.ts gives a connection slot back on. */

function setup() {
  const errors: string[] = [];
  const hub = new Hub(new StateStore(), {
    ...hubOptions(),
    logger: { warn: () => {}, error: (_object, message) => errors.push(message) },
  });
  return { hub, errors };
}

test('every observer is told once per client that leaves, however it leaves', () => {
  const { hub } = setup();
  const left: number[] = [];
  hub.observe({ left: (client) => left.push(client.id) });
  const closed = hub.connect(new FakeSocket(), 'web', 'json');
  const dropped = hub.connect(new FakeSocket(), 'web', 'json');
  const kept = hub.connect(new FakeSocket(), 'tui', 'json');
  hub.close(closed, 4001, 'token_expired');
  hub.disconnect(dropped);
  // Again: already gone, not told twice.
  hub.disconnect(closed);
  assert.deepEqual(left, [closed.id, dropped.id]);
  hub.closeAll(1001, 'server shutting down');
  assert.deepEqual(left, [closed.id, dropped.id, kept.id]);
});

test('an observer that throws is counted under `left`; the others are told, and the client is gone', () => {
  const { hub, errors } = setup();
  const told: HubClient[] = [];
  hub.observe({
    left: () => {
      throw new Error('observer bug');
    },
  });
  const remove = hub.observe({ left: (client) => told.push(client) });
  const client = hub.connect(new FakeSocket(), 'web', 'json');
  hub.disconnect(client);
  assert.deepEqual(told, [client]);
  assert.equal(hub.stats.errors.left, 1);
  assert.equal(hub.clients.size, 0);
  assert.equal(errors.length, 1);
  // Removed: no longer told.
  remove();
  hub.disconnect(hub.connect(new FakeSocket(), 'web', 'json'));
  assert.equal(told.length, 1);
});
