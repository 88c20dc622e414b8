import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClientView, type DiffUpdate, type StateUpdate } from '../../src/client.ts';

function stateUpdate(sequence: number, data: StateUpdate['data'], epoch = 'e1'): StateUpdate {
  return { type: 'state_update', sequence, epoch, timestamp: '2024-01-01T00:00:00.000Z', data };
}

function diffUpdate(base: number, sequence: number, changes: DiffUpdate['changes']): DiffUpdate {
  return {
    type: 'diff_update',
    sequence,
    base_sequence: base,
    timestamp: '2024-01-01T00:00:00.000Z',
    changes,
  };
}

describe('ClientView.apply', () => {
  test('starts empty', () => {
    const view = new ClientView();
    assert.deepEqual(view.data, {});
    assert.equal(view.sequence, undefined);
    assert.equal(view.epoch, undefined);
  });

  test('a state_update replaces the view', () => {
    const view = new ClientView();
    assert.equal(view.apply(stateUpdate(5, { orders: { a: { state: 'NEW' } } })), true);
    assert.deepEqual(view.data, { orders: { a: { state: 'NEW' } } });
    assert.equal(view.sequence, 5);
    assert.equal(view.epoch, 'e1');
    // A later snapshot replaces everything, whatever its sequence and epoch.
    assert.equal(view.apply(stateUpdate(2, { account: { total_balance: 1 } }, 'e2')), true);
    assert.deepEqual(view.data, { account: { total_balance: 1 } });
    assert.equal(view.sequence, 2);
    assert.equal(view.epoch, 'e2');
  });

  test('a diff starting at the view sequence applies as a merge patch', () => {
    const view = new ClientView();
    view.apply(
      stateUpdate(5, { orders: { a: { state: 'NEW', qty: 1 }, b: { state: 'NEW' } }, account: { x: 1 } }),
    );
    const applied = view.apply(
      diffUpdate(5, 9, { orders: { a: { state: 'FILLED' }, b: null, c: { state: 'NEW' } }, account: null }),
    );
    assert.equal(applied, true);
    assert.deepEqual(view.data, { orders: { a: { state: 'FILLED', qty: 1 }, c: { state: 'NEW' } } });
    assert.equal(view.sequence, 9);
    assert.equal(view.epoch, 'e1');
    assert.equal(view.apply(diffUpdate(9, 10, { account: { x: 2 } })), true);
    assert.deepEqual(view.data, {
      orders: { a: { state: 'FILLED', qty: 1 }, c: { state: 'NEW' } },
      account: { x: 2 },
    });
    assert.equal(view.sequence, 10);
  });

  test('a diff with another base is refused and leaves the view as it was', () => {
    const view = new ClientView();
    view.apply(stateUpdate(5, { orders: { a: { state: 'NEW' } } }));
    const before = structuredClone(view.data);
    for (const base of [4, 6, 0]) {
      assert.equal(view.apply(diffUpdate(base, 12, { orders: { a: { state: 'FILLED' } } })), false);
      assert.deepEqual(view.data, before);
      assert.equal(view.sequence, 5);
    }
  });

  test('a diff before any snapshot is refused', () => {
    const view = new ClientView();
    assert.equal(view.apply(diffUpdate(0, 1, { orders: { a: {} } })), false);
    assert.deepEqual(view.data, {});
    assert.equal(view.sequence, undefined);
  });
});
