import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { applyMergePatch, type Json, type JsonObject } from '../../src/merge-patch.ts';
import { SINGLE, StateStore, TOO_OLD } from '../../src/state.ts';
import { buildFilter, type Filter, TOPICS, type Topic } from '../../src/topics.ts';

const wire = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

describe('StateStore: sequence', () => {
  test('starts at 0 with no update time', () => {
    const state = new StateStore({ now: () => 123 });
    assert.equal(state.sequence, 0);
    assert.equal(state.lastUpdate, undefined);
    assert.equal(state.startedAt, 123);
    assert.equal(state.journalLength, 0);
    assert.match(state.epoch, /^[0-9a-f]{16}$/);
    assert.notEqual(new StateStore().epoch, state.epoch);
  });

  test('set and delete each raise it by one and return it', () => {
    let time = 1000;
    const state = new StateStore({ now: () => time });
    assert.equal(state.set('orders', 'a', { state: 'NEW' }), 1);
    time = 2000;
    assert.equal(state.set('orders', 'a', { state: 'FILLED' }), 2);
    assert.equal(state.lastUpdate, 2000);
    // Setting an equal value is still a change.
    assert.equal(state.set('orders', 'a', { state: 'FILLED' }), 3);
    assert.equal(state.set('account', SINGLE, { total_balance: 1 }), 4);
    time = 3000;
    assert.equal(state.set('orders', 'a', undefined), 5);
    assert.equal(state.lastUpdate, 3000);
    assert.equal(state.set('account', SINGLE, undefined), 6);
    assert.equal(state.sequence, 6);
    assert.equal(state.journalLength, 6);
  });

  test('deleting a missing key changes nothing', () => {
    let time = 1000;
    const state = new StateStore({ now: () => time });
    state.set('orders', 'a', { state: 'NEW' });
    time = 5000;
    assert.equal(state.set('orders', 'missing', undefined), 1);
    assert.equal(state.set('positions', 'BTC', undefined), 1);
    assert.equal(state.set('account', SINGLE, undefined), 1);
    assert.equal(state.sequence, 1);
    assert.equal(state.lastUpdate, 1000);
    assert.equal(state.journalLength, 1);
  });

  test('get, keys and size', () => {
    const state = new StateStore();
    state.set('orders', 'a', { n: 1 });
    state.set('orders', 'b', { n: 2 });
    state.set('account', SINGLE, { total_balance: 5 });
    assert.deepEqual(state.get('orders', 'a'), { n: 1 });
    assert.equal(state.get('orders', 'zzz'), undefined);
    assert.deepEqual(state.get('account'), { total_balance: 5 });
    assert.deepEqual([...state.keys('orders')], ['a', 'b']);
    const size = state.size();
    assert.equal(size.orders, 2);
    assert.equal(size.account, 1);
    assert.equal(size.positions, 0);
    assert.deepEqual(Object.keys(size).sort(), [...TOPICS].sort());
  });
});

describe('StateStore.snapshot', () => {
  function filled(): StateStore {
    const state = new StateStore();
    state.set('market_data', 'BTC', { last_price: 1 });
    state.set('market_data', 'ETH', { last_price: 2 });
    state.set('orders', 'o1', { state: 'NEW' });
    state.set('positions', 'BTC', { quantity: 1 });
    return state;
  }

  test('keyed topics hold every entity by key', () => {
    const state = filled();
    assert.deepEqual(state.snapshot(buildFilter(['market_data', 'orders'])), {
      market_data: { BTC: { last_price: 1 }, ETH: { last_price: 2 } },
      orders: { o1: { state: 'NEW' } },
    });
  });

  test('subscribed keyed topics are present even when empty', () => {
    const state = filled();
    assert.deepEqual(state.snapshot(buildFilter(['trades', 'strategies'])), { trades: {}, strategies: {} });
  });

  test('symbol-scoped filters hold only those symbols that exist', () => {
    const state = filled();
    assert.deepEqual(state.snapshot(buildFilter(['market_data:ETH', 'market_data:XRP'])), {
      market_data: { ETH: { last_price: 2 } },
    });
    assert.deepEqual(state.snapshot(buildFilter(['orderbook:BTC'])), { orderbook: {} });
  });

  test('single-object topics are absent until set', () => {
    const state = filled();
    const filter = buildFilter(['account', 'positions']);
    assert.deepEqual(state.snapshot(filter), { positions: { BTC: { quantity: 1 } } });
    state.set('account', SINGLE, { total_balance: 10 });
    assert.deepEqual(state.snapshot(filter), {
      positions: { BTC: { quantity: 1 } },
      account: { total_balance: 10 },
    });
    state.set('account', SINGLE, undefined);
    assert.equal('account' in state.snapshot(filter), false);
  });

  test('lists topics in TOPICS order, whatever the subscription order', () => {
    const state = filled();
    state.set('system', SINGLE, { uptime: 1 });
    const snapshot = state.snapshot(buildFilter(['system', 'orders', 'market_data']));
    assert.deepEqual(Object.keys(snapshot), ['market_data', 'orders', 'system']);
  });

  test('an empty filter gives an empty snapshot', () => {
    assert.deepEqual(filled().snapshot(buildFilter([])), {});
  });
});

describe('StateStore.changesSince', () => {
  test('undefined when nothing changed, or only outside the filter', () => {
    const state = new StateStore();
    const filter = buildFilter(['orders', 'market_data:BTC']);
    assert.equal(state.changesSince(0, filter), undefined);
    state.set('positions', 'BTC', { quantity: 1 });
    state.set('market_data', 'ETH', { last_price: 1 });
    state.set('account', SINGLE, { total_balance: 1 });
    assert.equal(state.changesSince(0, filter), undefined);
    assert.equal(state.changesSince(state.sequence, filter), undefined);
    assert.equal(state.changesSince(state.sequence + 10, filter), undefined);
  });

  test('undefined when a change was undone within the window', () => {
    const state = new StateStore();
    const filter = buildFilter(['orders', 'account']);
    state.set('orders', 'a', { state: 'NEW', qty: 1 });
    const since = state.sequence;
    state.set('orders', 'a', { state: 'FILLED', qty: 1 });
    state.set('orders', 'a', { state: 'NEW', qty: 1 });
    state.set('orders', 'b', { state: 'NEW' });
    state.set('orders', 'b', undefined);
    state.set('account', SINGLE, { total_balance: 1 });
    state.set('account', SINGLE, undefined);
    assert.equal(state.changesSince(since, filter), undefined);
  });

  test('a patch with only the changed fields', () => {
    const state = new StateStore();
    state.set('orders', 'a', { state: 'NEW', qty: 1, price: 100 });
    state.set('orders', 'b', { state: 'NEW', qty: 2 });
    state.set('account', SINGLE, { total_balance: 10, margin_used: 1 });
    const since = state.sequence;
    state.set('orders', 'a', { state: 'PARTIALLY_FILLED', qty: 1, price: 100, filled: 0.5 });
    state.set('orders', 'c', { state: 'NEW' });
    state.set('account', SINGLE, { total_balance: 11 });
    assert.deepEqual(state.changesSince(since, buildFilter(['orders', 'account'])), {
      orders: { a: { state: 'PARTIALLY_FILLED', filled: 0.5 }, c: { state: 'NEW' } },
      account: { total_balance: 11, margin_used: null },
    });
    // Only the part of the change inside the filter.
    assert.deepEqual(state.changesSince(since, buildFilter(['account'])), {
      account: { total_balance: 11, margin_used: null },
    });
  });

  test('null for deleted entities', () => {
    const state = new StateStore();
    state.set('orders', 'a', { state: 'NEW' });
    state.set('account', SINGLE, { total_balance: 10 });
    const since = state.sequence;
    state.set('orders', 'a', undefined);
    state.set('account', SINGLE, undefined);
    assert.deepEqual(state.changesSince(since, buildFilter(['orders', 'account'])), {
      orders: { a: null },
      account: null,
    });
  });

  test('the whole value for new entities, and for a single topic set for the first time', () => {
    const state = new StateStore();
    state.set('orders', 'a', { state: 'NEW', tags: ['x'] });
    state.set('account', SINGLE, { total_balance: 1 });
    assert.deepEqual(state.changesSince(0, buildFilter(['orders', 'account'])), {
      orders: { a: { state: 'NEW', tags: ['x'] } },
      account: { total_balance: 1 },
    });
  });

  test('symbol-scoped filters see only their symbols', () => {
    const state = new StateStore();
    state.set('trades', 'BTC', [{ id: 1 }]);
    state.set('trades', 'ETH', [{ id: 2 }]);
    assert.deepEqual(state.changesSince(0, buildFilter(['trades:ETH'])), { trades: { ETH: [{ id: 2 }] } });
  });

  test('a delete then a re-create within the window gives the diff from the old value', () => {
    const state = new StateStore();
    state.set('orders', 'a', { state: 'NEW', qty: 1, price: 5 });
    const since = state.sequence;
    state.set('orders', 'a', undefined);
    state.set('orders', 'a', { state: 'NEW', qty: 2 });
    const patch = state.changesSince(since, buildFilter(['orders']));
    assert.deepEqual(patch, { orders: { a: { qty: 2, price: null } } });
    const view = { orders: { a: { state: 'NEW', qty: 1, price: 5 } } };
    assert.deepEqual(applyMergePatch(view, patch as JsonObject), state.snapshot(buildFilter(['orders'])));
  });

  test('a create then a delete within the window leaves nothing', () => {
    const state = new StateStore();
    state.set('orders', 'keep', { state: 'NEW' });
    const since = state.sequence;
    state.set('orders', 'a', { state: 'NEW' });
    state.set('orders', 'a', undefined);
    assert.equal(state.changesSince(since, buildFilter(['orders'])), undefined);
  });

  test('TOO_OLD after trimJournal', () => {
    const state = new StateStore();
    for (let i = 0; i < 5; i++) state.set('orders', `o${i}`, { i });
    state.trimJournal(3);
    assert.equal(state.journalLength, 2);
    const filter = buildFilter(['orders']);
    assert.equal(state.changesSince(0, filter), TOO_OLD);
    assert.equal(state.changesSince(2, filter), TOO_OLD);
    assert.deepEqual(state.changesSince(3, filter), { orders: { o3: { i: 3 }, o4: { i: 4 } } });
    assert.deepEqual(state.changesSince(4, filter), { orders: { o4: { i: 4 } } });
    assert.equal(state.changesSince(5, filter), undefined);
  });

  test('TOO_OLD after the journal overflows maxJournal', () => {
    const state = new StateStore({ maxJournal: 3 });
    for (let i = 0; i < 5; i++) state.set('orders', `o${i}`, { i });
    assert.equal(state.journalLength, 3);
    const filter = buildFilter(['orders']);
    assert.equal(state.changesSince(1, filter), TOO_OLD);
    assert.deepEqual(state.changesSince(2, filter), { orders: { o2: { i: 2 }, o3: { i: 3 }, o4: { i: 4 } } });
  });

  test('TOO_OLD with no journal at all', () => {
    const state = new StateStore({ maxJournal: 0 });
    state.set('orders', 'a', { i: 1 });
    assert.equal(state.journalLength, 0);
    assert.equal(state.changesSince(0, buildFilter(['orders'])), TOO_OLD);
    assert.equal(state.changesSince(1, buildFilter(['orders'])), undefined);
  });
});

describe('StateStore.trimJournal', () => {
  test('forgets entries at or below the sequence', () => {
    const state = new StateStore();
    for (let i = 0; i < 10; i++) state.set('orders', 'a', { i });
    state.trimJournal(0);
    assert.equal(state.journalLength, 10);
    state.trimJournal(4);
    assert.equal(state.journalLength, 6);
    state.trimJournal(4);
    assert.equal(state.journalLength, 6);
    state.trimJournal(2); // below what is already trimmed
    assert.equal(state.journalLength, 6);
    state.trimJournal(10);
    assert.equal(state.journalLength, 0);
    assert.equal(state.changesSince(10, buildFilter(['orders'])), undefined);
    assert.equal(state.changesSince(9, buildFilter(['orders'])), TOO_OLD);
  });

  test('trimming past the sequence keeps later changes reachable', () => {
    const state = new StateStore();
    state.set('orders', 'a', { i: 1 });
    state.trimJournal(100);
    assert.equal(state.journalLength, 0);
    state.set('orders', 'a', { i: 2 });
    assert.deepEqual(state.changesSince(1, buildFilter(['orders'])), { orders: { a: { i: 2 } } });
    assert.equal(state.changesSince(0, buildFilter(['orders'])), TOO_OLD);
  });
});

describe('property: a view kept from snapshot plus changesSince equals the snapshot', () => {
  const TOPICS_USED = ['market_data', 'orders', 'positions', 'account'] as const;
  const KEYS = ['K1', 'K2', 'K3'];
  const FILTERS: Filter[] = [
    buildFilter(TOPICS),
    buildFilter(['market_data']),
    buildFilter(['market_data:K1', 'account']),
    buildFilter(['orders', 'positions']),
  ];

  type Op =
    | { kind: 'set'; topic: (typeof TOPICS_USED)[number]; key: string; value: Json }
    | { kind: 'delete'; topic: (typeof TOPICS_USED)[number]; key: string }
    | { kind: 'tick'; views: boolean[] };

  const scalar = fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constantFrom('a', 'b', ''), fc.boolean());
  const field = fc.constantFrom('p', 'q', 'r', 's');
  const { value } = fc.letrec<{ value: JsonObject; member: Json }>((tie) => ({
    value: fc.dictionary(field, tie('member'), { maxKeys: 4, noNullPrototype: true }),
    member: fc.oneof({ depthSize: 'small' }, scalar, fc.array(scalar, { maxLength: 2 }), tie('value')),
  }));
  const topic = fc.constantFrom(...TOPICS_USED);
  const keyFor = (t: Topic) => (t === 'account' ? fc.constant(SINGLE) : fc.constantFrom(...KEYS));
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: topic.chain((t) =>
        fc.record({ kind: fc.constant('set' as const), topic: fc.constant(t), key: keyFor(t), value }),
      ),
    },
    {
      weight: 2,
      arbitrary: topic.chain((t) =>
        fc.record({ kind: fc.constant('delete' as const), topic: fc.constant(t), key: keyFor(t) }),
      ),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('tick' as const),
        // Which views catch up at this tick; the others fall behind and catch up over a longer window.
        views: fc.array(fc.boolean(), { minLength: FILTERS.length, maxLength: FILTERS.length }),
      }),
    },
  );

  test('for random operations, ticks and journal limits', () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 40 }),
        fc.constantFrom(1_000_000, 8, 3, 1),
        fc.boolean(),
        (ops, maxJournal, trimAtTicks) => {
          const state = new StateStore({ maxJournal });
          // Some state before the views start.
          state.set('market_data', 'K1', { p: 1 });
          state.set('orders', 'K2', { q: 'a' });
          const views = FILTERS.map((filter) => ({
            filter,
            data: wire(state.snapshot(filter)),
            sequence: state.sequence,
          }));
          const catchUp = (view: (typeof views)[number]) => {
            const changes = state.changesSince(view.sequence, view.filter);
            if (changes === TOO_OLD) view.data = wire(state.snapshot(view.filter));
            else if (changes !== undefined) {
              view.data = applyMergePatch(view.data, wire(changes)) as JsonObject;
            }
            view.sequence = state.sequence;
            assert.deepEqual(view.data, wire(state.snapshot(view.filter)));
          };
          for (const operation of [...ops, { kind: 'tick' as const, views: FILTERS.map(() => true) }]) {
            if (operation.kind === 'set') {
              state.set(operation.topic, operation.key, structuredClone(operation.value));
            } else if (operation.kind === 'delete') {
              state.set(operation.topic, operation.key, undefined);
            } else {
              views.forEach((view, index) => {
                if (operation.views[index]) catchUp(view);
              });
              // As the broadcaster does: no reader needs changes from before the slowest one.
              if (trimAtTicks) state.trimJournal(Math.min(...views.map((view) => view.sequence)));
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
