/**
 * What a publisher that can write anything on Redis (or a backend that answers anything) cannot do to the state:
 * nest deeper than the codec can encode, store more than the record, entry, symbol and total budgets, store a
 * number no client can receive, or hide an entity under `__proto__`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encode } from '../../src/codec.ts';
import { Ingest, type IngestOptions } from '../../src/ingest/ingest.ts';
import { PayloadError } from '../../src/ingest/schemas.ts';
import type { JsonObject } from '../../src/merge-patch.ts';
import { SINGLE, StateStore, TOO_OLD } from '../../src/state.ts';
import { buildFilter } from '../../src/topics.ts';

/** A poll start time after every write so far: a complete list then removes what it does not return. */
const AFTER_EVERY_WRITE = Number.MAX_SAFE_INTEGER;

function setup(options: Partial<IngestOptions> = {}, state = new StateStore()) {
  const clock = { now: 1_000_000 };
  const ingest = new Ingest(state, {
    orderbookDepth: 20,
    tradesKept: 50,
    terminalOrderRetention: 60_000,
    maxMessageSize: 1 << 20,
    maxSymbols: 1000,
    maxRecordSize: 16 * 1024,
    maxEntries: 10_000,
    maxStateSize: 32 << 20,
    symbolIdleTtl: 3_600_000,
    now: () => clock.now,
    ...options,
  });
  return { state, ingest, clock };
}

/** `[[[…1…]]]`, `depth` arrays deep. */
function nestedArrays(depth: number): string {
  return `${'['.repeat(depth)}1${']'.repeat(depth)}`;
}

function refuses(action: () => void, pattern: RegExp): void {
  assert.throws(action, (error) => error instanceof PayloadError && pattern.test(error.message));
}

describe('Ingest: depth, size and number limits on every value', () => {
  test('arrays nested 5,000 deep are refused on every topic, as objects are (the codec would overflow the stack)', () => {
    const { state, ingest } = setup();
    const deep = nestedArrays(5000);
    const payloads: [string, string][] = [
      ['market_data:BTCUSDT', `{"last_price":1,"x":${deep}}`],
      ['orderbook:BTCUSDT', `{"bids":{},"asks":{},"x":${deep}}`],
      ['trades:BTCUSDT', `{"trade_id":1,"price":1,"quantity":1,"timestamp":1,"x":${deep}}`],
      ['orders:x', `{"order_id":"o1","symbol":"BTC","state":"NEW","x":${deep}}`],
      ['positions:x', `{"symbol":"BTC","quantity":1,"x":${deep}}`],
      ['account:x', `{"total_balance":1,"x":${deep}}`],
      ['strategies:x', `{"id":"s1","x":${deep}}`],
      // Arrays inside objects inside arrays: every level counts.
      ['market_data:BTCUSDT', `{"last_price":1,"x":${'[{"a":'.repeat(20)}1${'}]'.repeat(20)}}`],
    ];
    for (const [channel, payload] of payloads)
      refuses(() => ingest.handleMessage(channel, payload), /deeper than 32/);
    assert.equal(state.sequence, 0);
    // 32 levels are still taken, and what is stored can be encoded.
    ingest.handleMessage('market_data:BTCUSDT', `{"last_price":1,"x":${nestedArrays(31)}}`);
    assert.doesNotThrow(() => encode('json', state.snapshot(buildFilter(['market_data']))));
    assert.doesNotThrow(() => encode('msgpack', state.snapshot(buildFilter(['market_data']))));
  });

  test('polled sections are bounded the same way (replaceSection, replaceSingle)', () => {
    const { state, ingest } = setup();
    const deep = JSON.parse(nestedArrays(100));
    refuses(() => ingest.replaceSection('strategies', [{ id: 'a', extra: deep }], 0), /deeper than 32/);
    refuses(() => ingest.replaceSingle('risk', { margin_ratio: 1, extra: deep }), /deeper than 32/);
    refuses(() => ingest.replaceSingle('risk', { margin_ratio: Number.POSITIVE_INFINITY }), /finite/);
    refuses(
      () => ingest.replaceSingle('risk', { margin_ratio: 1, pad: 'x'.repeat(20_000) }),
      /max_record_size/,
    );
    assert.equal(state.sequence, 0);
  });

  test('a non-finite number is invalid on every field, extra fields and balances included', () => {
    const { state, ingest } = setup();
    refuses(
      () => ingest.handleMessage('account:a', '{"balances":{"BTC":"1e400"}}'),
      /balances.BTC is not a finite/,
    );
    refuses(
      () => ingest.handleMessage('account:a', '{"total_balance":1,"extra":1e400}'),
      /extra is not a finite/,
    );
    refuses(
      () => ingest.handleMessage('market_data:BTC', '{"last_price":1,"extra":{"deep":[1,-1e999]}}'),
      /deep is not a finite/,
    );
    refuses(
      () => ingest.handleMessage('orderbook:BTC', '{"bids":{},"asks":{},"x":1e400}'),
      /x is not a finite/,
    );
    assert.equal(state.sequence, 0);
    assert.equal(ingest.counters.invalid.redis.account, 2);
  });

  test('ingest.max_record_size refuses a record whose stored value is larger, extra fields included', () => {
    const { state, ingest } = setup({ maxRecordSize: 1024 });
    const pad = 'x'.repeat(1100);
    refuses(
      () =>
        ingest.handleMessage(
          'trades:OOM0',
          `{"trade_id":1,"price":1,"quantity":1,"timestamp":1,"pad":"${pad}"}`,
        ),
      /trades record of more than 1024 bytes refused: ingest.max_record_size/,
    );
    refuses(
      () =>
        ingest.handleMessage('market_data:BTC', `{"last_price":1,"extra":{"list":[${'1,'.repeat(200)}1]}}`),
      /max_record_size/,
    );
    refuses(
      () => ingest.handleMessage('orders:x', `{"order_id":"a","symbol":"B","state":"NEW","p":"${pad}"}`),
      /max_record_size/,
    );
    // A full book is far larger than the limit: what is stored is its best levels, and that is measured.
    const bids = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [String(1000 - i * 0.01), 1]));
    ingest.handleMessage('orderbook:BTC', JSON.stringify({ bids, asks: {} }));
    assert.equal(((state.get('orderbook', 'BTC') as JsonObject).bids as unknown[]).length, 20);
    refuses(
      () => ingest.handleMessage('orderbook:BTC', JSON.stringify({ bids, asks: {}, pad })),
      /orderbook record of more than 1024 bytes/,
    );
    assert.deepEqual(ingest.counters.refused.max_record_size, {
      trades: 1,
      market_data: 1,
      orders: 1,
      orderbook: 1,
    });
    assert.equal(state.count('trades'), 0);
    assert.ok(state.bytes > 0 && state.bytes <= 1024);
  });
});

describe('Ingest: entries per topic, symbols and the total budget', () => {
  test('ingest.max_entries caps orders, positions and strategies; known entries still update', () => {
    const { state, ingest } = setup({ maxEntries: 3 });
    for (let i = 0; i < 5; i++) {
      const positions = `{"symbol":"S${i}","quantity":1}`;
      const order = `{"order_id":"o${i}","symbol":"BTC","state":"NEW"}`;
      const strategy = `{"id":"s${i}"}`;
      if (i < 3) {
        ingest.handleMessage('positions:x', positions);
        ingest.handleMessage('orders:x', order);
        ingest.handleMessage('strategies:x', strategy);
      } else {
        refuses(
          () => ingest.handleMessage('positions:x', positions),
          /positions S\d refused: ingest.max_entries \(3\)/,
        );
        refuses(() => ingest.handleMessage('orders:x', order), /orders o\d refused: ingest.max_entries/);
        refuses(() => ingest.handleMessage('strategies:x', strategy), /max_entries/);
      }
    }
    assert.deepEqual(state.size().positions, 3);
    assert.deepEqual(state.size().orders, 3);
    assert.deepEqual(state.size().strategies, 3);
    ingest.handleMessage('orders:x', '{"order_id":"o0","symbol":"BTC","state":"FILLED"}');
    assert.equal((state.get('orders', 'o0') as JsonObject).state, 'FILLED');
    // A closed position frees its place.
    ingest.handleMessage('positions:x', '{"symbol":"S0","quantity":0}');
    ingest.handleMessage('positions:x', '{"symbol":"S4","quantity":1}');
    assert.deepEqual([...state.keys('positions')].sort(), ['S1', 'S2', 'S4']);
    assert.deepEqual(ingest.counters.refused.max_entries, { positions: 2, orders: 2, strategies: 2 });
  });

  test('a polled list past ingest.max_entries is refused whole; one that replaces entries within it is taken', () => {
    const { state, ingest } = setup({ maxEntries: 3 });
    ingest.replaceSection('strategies', [{ id: 'a' }, { id: 'b' }], 0);
    refuses(
      () => ingest.replaceSection('strategies', [{ id: 'c' }, { id: 'd' }], 0, false),
      /strategies list of 4 entries refused: ingest.max_entries \(3\)/,
    );
    assert.deepEqual([...state.keys('strategies')].sort(), ['a', 'b']);
    // A complete list removes a and b first: three entries in the end.
    ingest.replaceSection('strategies', [{ id: 'c' }, { id: 'd' }, { id: 'e' }], AFTER_EVERY_WRITE);
    assert.deepEqual([...state.keys('strategies')].sort(), ['c', 'd', 'e']);
  });

  test('reconciling a polled section is all or nothing: a bad second record leaves the first unwritten', () => {
    const { state, ingest } = setup();
    refuses(
      () =>
        ingest.replaceSection(
          'strategies',
          [
            { id: 'a', pnl: 1 },
            { id: 'b', pnl: '1e400' },
          ],
          0,
        ),
      /pnl is not a finite number/,
    );
    assert.equal(state.get('strategies', 'a'), undefined);
    assert.equal(state.sequence, 0);
  });

  test('ingest.max_state_size refuses what would grow the state past it, counted; updates that do not grow it pass', () => {
    const { state, ingest } = setup({ maxStateSize: 4096, maxRecordSize: 1024 });
    const pad = 'x'.repeat(900);
    let refused = 0;
    for (let i = 0; i < 10; i++) {
      try {
        ingest.handleMessage(`market_data:S${i}`, `{"last_price":${i},"pad":"${pad}"}`);
      } catch (error) {
        assert.match(
          (error as Error).message,
          /market_data S\d refused: ingest.max_state_size \(4096 bytes\) is full/,
        );
        refused++;
      }
    }
    assert.ok(refused >= 6, `refused ${refused}`);
    assert.ok(state.bytes <= 4096);
    assert.ok(ingest.budgetUsed > 0.8 && ingest.budgetUsed <= 1, String(ingest.budgetUsed));
    assert.equal(ingest.counters.refused.max_state_size.market_data, refused);
    // A known symbol's new price (same size) is still taken when full.
    ingest.handleMessage('market_data:S0', `{"last_price":99,"pad":"${pad}"}`);
    assert.equal((state.get('market_data', 'S0') as JsonObject).last_price, 99);
    // A polled list that would overflow is refused whole, before anything is written.
    const sequence = state.sequence;
    refuses(
      () =>
        ingest.replaceSection(
          'strategies',
          [
            { id: 'a', pad },
            { id: 'b', pad },
          ],
          0,
        ),
      /strategies list refused: ingest.max_state_size/,
    );
    assert.equal(state.sequence, sequence);
  });

  test('an account poll writes its positions and its account together or not at all', () => {
    const { state, ingest } = setup({ maxStateSize: 3000, maxRecordSize: 2048 });
    ingest.replaceAccount({ total_balance: 1 }, [{ symbol: 'OLD', quantity: 1 }], AFTER_EVERY_WRITE);
    const sequence = state.sequence;
    // An account with neither total_balance nor balances: the positions that came with it are not written either.
    refuses(
      () =>
        ingest.replaceAccount({ available_balance: 5 }, [{ symbol: 'NEW', quantity: 2 }], AFTER_EVERY_WRITE),
      /neither total_balance nor balances/,
    );
    // Positions that fit the budget alone, with an account that does not fit beside them.
    const pad = 'x'.repeat(1500);
    refuses(
      () =>
        ingest.replaceAccount(
          { total_balance: 2, pad },
          [
            { symbol: 'NEW', quantity: 2, pad },
            { symbol: 'NEW2', quantity: 2 },
          ],
          AFTER_EVERY_WRITE,
        ),
      /positions list refused: ingest.max_state_size/,
    );
    assert.equal(state.sequence, sequence);
    assert.deepEqual(Object.keys(state.snapshot(buildFilter(['positions'])).positions as JsonObject), [
      'OLD',
    ]);
    assert.equal((state.get('account', SINGLE) as JsonObject).total_balance, 1);
    assert.deepEqual(ingest.counters.invalid.poll, { account: 1, positions: 1 });
    // The same poll with a smaller account goes through whole.
    ingest.replaceAccount({ total_balance: 3 }, [{ symbol: 'NEW', quantity: 2, pad }], AFTER_EVERY_WRITE);
    assert.deepEqual(Object.keys(state.snapshot(buildFilter(['positions'])).positions as JsonObject), [
      'NEW',
    ]);
    assert.equal((state.get('account', SINGLE) as JsonObject).total_balance, 3);
  });

  test('the state size follows replacements and removals; trade lists count each trade once', () => {
    const { state, ingest } = setup({ tradesKept: 2 });
    const trade = (id: number) => `{"trade_id":${id},"price":1,"quantity":1,"timestamp":${id}}`;
    ingest.handleMessage('trades:BTC', trade(1));
    const one = state.bytes;
    ingest.handleMessage('trades:BTC', trade(2));
    const two = state.bytes;
    ingest.handleMessage('trades:BTC', trade(3));
    assert.ok(two > one);
    assert.equal(state.bytes, two, 'two trades kept, the same size as before');
    ingest.handleMessage('orders:x', '{"order_id":"a","symbol":"B","state":"NEW"}');
    ingest.handleMessage('orders:x', '{"order_id":"a","symbol":"B","state":"NEW","note":"longer"}');
    ingest.replaceSection('orders', [], AFTER_EVERY_WRITE);
    assert.equal(state.bytes, two);
  });

  test('symbols idle for ingest.symbol_idle_ttl are forgotten, least recently updated first when full', () => {
    const { state, ingest, clock } = setup({ maxSymbols: 3, symbolIdleTtl: 60_000 });
    ingest.handleMessage('market_data:A', '{"last_price":1}');
    ingest.handleMessage('orderbook:A', '{"bids":{"1":1},"asks":{}}');
    ingest.handleMessage('market_data:B', '{"last_price":1}');
    ingest.handleMessage('trades:C', '{"trade_id":1,"price":1,"quantity":1,"timestamp":1}');
    clock.now += 30_000;
    ingest.handleMessage('market_data:B', '{"last_price":2}');
    // Full, and nobody idle long enough: a new name is refused.
    refuses(() => ingest.handleMessage('market_data:D', '{"last_price":1}'), /max_symbols \(3\) reached/);
    clock.now += 40_000;
    // A and C are idle (70 s), B is not (40 s): A, the least recently written, makes room for D.
    ingest.handleMessage('market_data:D', '{"last_price":1}');
    assert.deepEqual([...state.keys('market_data')].sort(), ['B', 'D']);
    assert.equal(state.get('orderbook', 'A'), undefined);
    assert.equal(state.get('trades', 'C') !== undefined, true);
    assert.equal(ingest.counters.symbolsEvicted, 1);
    // The sweep forgets the rest of the idle ones, with no new symbol needed.
    ingest.sweep();
    assert.equal(state.get('trades', 'C'), undefined);
    assert.equal(ingest.counters.symbolsEvicted, 2);
    clock.now += 70_000;
    ingest.sweep();
    assert.deepEqual(state.size().market_data, 0);
    assert.equal(ingest.counters.symbolsEvicted, 4);
    assert.equal(state.bytes, 0);
  });

  test('a refused record takes no place under ingest.max_symbols', () => {
    const { state, ingest } = setup({ maxSymbols: 1, maxRecordSize: 100 });
    refuses(
      () => ingest.handleMessage('market_data:A', `{"last_price":1,"p":"${'x'.repeat(200)}"}`),
      /max_record_size/,
    );
    ingest.handleMessage('market_data:B', '{"last_price":1}');
    assert.deepEqual([...state.keys('market_data')], ['B']);
  });
});

describe('Ingest: ids that would reach a prototype', () => {
  test('"__proto__" as an order or strategy id is refused and counted; nothing is stored', () => {
    const { state, ingest } = setup();
    refuses(
      () => ingest.handleMessage('orders:x', '{"order_id":"__proto__","symbol":"BTC","state":"NEW"}'),
      /id "__proto__" is not allowed/,
    );
    refuses(
      () => ingest.handleMessage('strategies:x', '{"id":"__proto__"}'),
      /id "__proto__" is not allowed/,
    );
    refuses(() => ingest.replaceSection('strategies', [{ id: '__proto__' }], 0), /not allowed/);
    assert.equal(state.sequence, 0);
    assert.equal(ingest.counters.invalid.redis.orders, 1);
    assert.equal(ingest.counters.invalid.redis.strategies, 1);
    assert.equal(ingest.counters.invalid.poll.strategies, 1);
    // A position's symbol is upper-cased, so `__proto__` is stored as `__PROTO__` and shows like any other.
    ingest.handleMessage('positions:x', '{"symbol":"__proto__","quantity":1}');
    const snapshot = state.snapshot(buildFilter(['positions']));
    assert.deepEqual(Object.keys(snapshot.positions as JsonObject), ['__PROTO__']);
  });
});

describe('StateStore: the journal is bounded in bytes', () => {
  test('past maxJournalBytes the oldest entries go and a reader that far behind gets a snapshot', () => {
    const state = new StateStore({ maxJournalBytes: 1000 });
    const filter = buildFilter(['market_data']);
    state.set('market_data', 'A', { v: 0 }, 400);
    const start = state.sequence;
    state.set('market_data', 'A', { v: 1 }, 400);
    state.set('market_data', 'A', { v: 2 }, 400);
    assert.notEqual(state.changesSince(start, filter), TOO_OLD);
    state.set('market_data', 'A', { v: 3 }, 400);
    state.set('market_data', 'A', { v: 4 }, 400);
    assert.ok(state.journalBytes <= 1000, String(state.journalBytes));
    assert.equal(state.changesSince(start, filter), TOO_OLD);
    assert.deepEqual(state.changesSince(state.sequence - 1, filter), { market_data: { A: { v: 4 } } });
    assert.equal(state.bytes, 400);
    state.set('market_data', 'A', undefined);
    assert.equal(state.bytes, 0);
  });
});
