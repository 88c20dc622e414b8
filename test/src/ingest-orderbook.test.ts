import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Ingest } from '../../src/ingest/ingest.ts';
import { PayloadError } from '../../src/ingest/schemas.ts';
import type { JsonObject } from '../../src/merge-patch.ts';
import { StateStore } from '../../src/state.ts';

// The order-book path checks and reduces each side in one pass (src/ingest/orderbook.ts). These tests hold
// it to what the generic path (schema check of every level, normalize, then the best levels) did: the same
// levels kept, and the same error, for the same fault first, when there are several.

function setup(orderbookDepth = 20, maxSymbols?: number) {
  const state = new StateStore();
  const ingest = new Ingest(state, {
    orderbookDepth,
    tradesKept: 5,
    terminalOrderRetention: 60_000,
    maxMessageSize: 1 << 22,
    maxSymbols,
  });
  return { state, ingest };
}

type Level = [priceText: string, quantityJson: string];

/** A book side as JSON text, written by hand so that any key (`__proto__`) and raw number (`1e400`) go through. */
function sideJson(levels: Level[]): string {
  return `{${levels.map(([price, quantity]) => `${JSON.stringify(price)}:${quantity}`).join(',')}}`;
}

function bookJson(bids: Level[], asks: Level[], extra = ''): string {
  return `{"bids":${sideJson(bids)},"asks":${sideJson(asks)}${extra}}`;
}

/** Sends `payload`, expects a PayloadError with exactly `message`, and checks that nothing changed. */
function expectRefused(context: ReturnType<typeof setup>, channel: string, payload: string, message: string) {
  const { state, ingest } = context;
  const sequence = state.sequence;
  const books = JSON.stringify([...state.keys('orderbook')].map((key) => state.get('orderbook', key)));
  const invalid = ingest.counters.invalid.redis.orderbook ?? 0;
  assert.throws(
    () => ingest.handleMessage(channel, payload),
    (error) => error instanceof PayloadError && error.topic === 'orderbook' && error.message === message,
    message,
  );
  assert.equal(state.sequence, sequence, 'a refused book changed the state');
  assert.equal(JSON.stringify([...state.keys('orderbook')].map((key) => state.get('orderbook', key))), books);
  assert.equal(ingest.counters.invalid.redis.orderbook, invalid + 1);
}

/** A finite number, or a string the schema takes for a decimal number. */
function isDecimal(value: unknown): boolean {
  return (
    (typeof value === 'number' && Number.isFinite(value)) ||
    (typeof value === 'string' && /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/.test(value))
  );
}

/** The reference: every valid level, sorted (stably) best first, the first `depth` kept. */
function referenceLevels(side: Record<string, unknown>, depth: number, descending: boolean): number[][] {
  return Object.entries(side)
    .map(([price, quantity]) => [Number(price), Number(quantity)])
    .filter(([, quantity]) => quantity > 0)
    .sort((a, b) => (descending ? b[0] - a[0] : a[0] - b[0]))
    .slice(0, depth);
}

/** A large valid side around 50,000: `count` levels, best first, all with a positive quantity. */
function largeSide(count: number, descending: boolean): Level[] {
  return Array.from({ length: count }, (_, i) => [
    (descending ? 50_000 - i * 0.5 : 50_000.5 + i * 0.5).toFixed(1),
    String(1 + (i % 7)),
  ]);
}

describe('Ingest: order book in one pass', () => {
  test('keeps the same levels as sorting every valid level (property)', () => {
    // Few distinct prices, each written several ways, so that books are full of equal prices.
    const price = fc
      .tuple(fc.integer({ min: 1, max: 40 }), fc.constantFrom('', '.0', '.00', 'e0', '0e-1'))
      .map(([units, suffix]) => (suffix === '0e-1' ? `${units}0e-1` : `${units}${suffix}`));
    const quantity = fc.oneof(
      fc.constantFrom('0', '"0"', '"0.000"', '-1', '"-2.5"'),
      fc.integer({ min: 1, max: 1000 }).map((q) => String(q / 100)),
      fc.integer({ min: 1, max: 1000 }).map((q) => `"${q / 100}"`),
    );
    const side = fc.array(fc.tuple(price, quantity), { maxLength: 60 });
    fc.assert(
      fc.property(side, side, fc.integer({ min: 1, max: 30 }), (bids, asks, depth) => {
        const { state, ingest } = setup(depth);
        const payload = bookJson(bids, asks, ',"last_update_id":"7","timestamp":1,"initialized":true');
        ingest.handleMessage('orderbook:btcusdt', payload);
        const parsed = JSON.parse(payload);
        assert.deepEqual(state.get('orderbook', 'BTCUSDT'), {
          bids: referenceLevels(parsed.bids, depth, true),
          asks: referenceLevels(parsed.asks, depth, false),
          last_update_id: 7,
          timestamp: 1,
          initialized: true,
          symbol: 'BTCUSDT',
        });
      }),
      { numRuns: 500 },
    );
  });

  test('refuses a book for the fault the generic path met first (property)', () => {
    // Faults of the three kinds the levels can carry, in any side and position, several at once. The generic path
    // checked every quantity (schema), then copied the sides (unsafe keys), then read the prices.
    const goodLevel = fc
      .tuple(fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 50 }))
      .map(([p, q]): Level => [String(p / 4), String(q)]);
    const badQuantity = fc
      .tuple(
        fc.integer({ min: 1, max: 400 }),
        fc.constantFrom('"lots"', 'null', 'true', '"1."', '[]', '1e400'),
      )
      .map(([p, q]): Level => [String(p / 4), q]);
    const unsafeKey = fc
      .constantFrom('__proto__', 'constructor', 'prototype')
      .map((key): Level => [key, '1']);
    const badPrice = fc
      .constantFrom('abc', 'Infinity', 'NaN', '1.', '1e400', ' ', '', '0x10')
      .map((key): Level => [key, '1']);
    const level = fc.oneof(
      { weight: 20, arbitrary: goodLevel },
      { weight: 1, arbitrary: badQuantity },
      { weight: 1, arbitrary: unsafeKey },
      { weight: 1, arbitrary: badPrice },
    );
    const side = fc.array(level, { maxLength: 40 });
    const context = setup(5);
    context.ingest.handleMessage('orderbook:ETH', bookJson([['1', '1']], [['2', '1']]));
    fc.assert(
      fc.property(side, side, (bids, asks) => {
        const payload = bookJson(bids, asks);
        const parsed = JSON.parse(payload) as Record<'bids' | 'asks', Record<string, unknown>>;
        const sides = (['bids', 'asks'] as const).map(
          (name) => [name, Object.entries(parsed[name])] as const,
        );
        /** The message of the first level, bids then asks, for which `fault` has one. */
        const firstFault = (
          fault: (side: string, price: string, quantity: unknown) => string | undefined,
        ) => {
          for (const [name, entries] of sides)
            for (const [price, quantity] of entries) {
              const message = fault(name, price, quantity);
              if (message) return message;
            }
        };
        const expected =
          firstFault((side, price, quantity) =>
            isDecimal(quantity)
              ? undefined
              : `invalid orderbook payload: /${side}/${price}: Expected union value`,
          ) ??
          firstFault((_, price) =>
            ['__proto__', 'constructor', 'prototype'].includes(price)
              ? `invalid orderbook payload: key ${JSON.stringify(price)} is not allowed`
              : undefined,
          ) ??
          firstFault((_, price) =>
            isDecimal(price) && Number.isFinite(Number(price))
              ? undefined
              : `orderbook price ${JSON.stringify(price)} is not a number`,
          );
        if (expected === undefined) context.ingest.handleMessage('orderbook:ETH', payload);
        else expectRefused(context, 'orderbook:ETH', payload, expected);
      }),
      { numRuns: 1000 },
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('Ingest: hostile order books', () => {
  const channel = 'orderbook:BTCUSDT';
  /** A context holding a valid book for BTCUSDT, which every refused message must leave as it is. */
  function withBook() {
    const context = setup(20);
    context.ingest.handleMessage(channel, bookJson([['1', '1']], [['2', '1']]));
    return context;
  }

  test('a bad level in the middle of a large book refuses the whole book', () => {
    const bids = largeSide(2000, true);
    const asks = largeSide(2000, false);
    const context = withBook();
    /** `side` with the level at `index` replaced. */
    const at = (side: Level[], index: number, level: Level) => side.map((l, i) => (i === index ? level : l));
    /** `side` with the quantity of the level at `index` replaced. */
    const quantityAt = (side: Level[], index: number, quantity: string) =>
      at(side, index, [side[index][0], quantity]);
    // Far below the best 20: a pass that stopped looking once the book was full would miss them.
    expectRefused(
      context,
      channel,
      bookJson(quantityAt(bids, 1000, '"lots"'), asks),
      'invalid orderbook payload: /bids/49500.0: Expected union value',
    );
    expectRefused(
      context,
      channel,
      bookJson(bids, quantityAt(asks, 1999, 'null')),
      'invalid orderbook payload: /asks/51000.0: Expected union value',
    );
    expectRefused(
      context,
      channel,
      bookJson(bids, quantityAt(asks, 1500, '1e400')),
      'invalid orderbook payload: /asks/50750.5: Expected union value',
    );
    // As a string, 1e400 is a decimal the schema takes; as a number it is Infinity, which no client could receive.
    expectRefused(
      context,
      channel,
      bookJson(bids, quantityAt(asks, 1500, '"1e400"')),
      'invalid orderbook payload: /asks/50750.5: quantity is not a finite number',
    );
    expectRefused(
      context,
      channel,
      bookJson(at(bids, 1000, ['1e400', '1']), asks),
      'orderbook price "1e400" is not a number',
    );
    expectRefused(
      context,
      channel,
      bookJson(bids, at(asks, 1000, ['abc', '0'])),
      'orderbook price "abc" is not a number',
    );
    expectRefused(
      context,
      channel,
      bookJson(at(bids, 1000, ['__proto__', '{"polluted":true}']), asks),
      'invalid orderbook payload: /bids/__proto__: Expected union value',
    );
    expectRefused(
      context,
      channel,
      bookJson(at(bids, 1000, ['__proto__', '1']), asks),
      'invalid orderbook payload: key "__proto__" is not allowed',
    );
    expectRefused(
      context,
      channel,
      bookJson(bids, at(asks, 3, ['constructor', '1'])),
      'invalid orderbook payload: key "constructor" is not allowed',
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // The same books without the bad level are taken.
    context.ingest.handleMessage(channel, bookJson(bids, asks));
    const book = context.state.get('orderbook', 'BTCUSDT') as JsonObject;
    assert.deepEqual(book.bids, referenceLevels(Object.fromEntries(bids), 20, true));
    assert.deepEqual(book.asks, referenceLevels(Object.fromEntries(asks), 20, false));
  });

  test('the sides and the other fields are checked as before', () => {
    const context = withBook();
    const refuse = (payload: string, message: string) => expectRefused(context, channel, payload, message);
    refuse('{"bids":null,"asks":{}}', 'invalid orderbook payload: /bids: Expected object');
    refuse('{"bids":{},"asks":[[1,1]]}', 'invalid orderbook payload: /asks: Expected object');
    refuse('{"bids":{}}', 'invalid orderbook payload: /asks: Expected required property');
    refuse('[]', 'invalid orderbook payload: Expected object');
    refuse('{"bids":{},"asks":{},"symbol":null}', 'invalid orderbook payload: /symbol: Expected string');
    refuse(
      '{"bids":{},"asks":{},"last_update_id":"x"}',
      'invalid orderbook payload: /last_update_id: Expected union value',
    );
    refuse(
      '{"bids":{},"asks":{},"timestamp":"1e400"}',
      'invalid orderbook payload: timestamp is not a finite number',
    );
    refuse(
      '{"bids":{},"asks":{},"initialized":"yes"}',
      'invalid orderbook payload: /initialized: Expected boolean',
    );
    refuse(
      '{"bids":{},"asks":{},"extra":{"prototype":1}}',
      'invalid orderbook payload: key "prototype" is not allowed',
    );
    refuse(
      `{"bids":{},"asks":{},"extra":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}`,
      'invalid orderbook payload: nested deeper than 32',
    );
    expectRefused(
      context,
      'orderbook',
      '{"bids":{},"asks":{}}',
      'orderbook payload has no symbol and its channel names none',
    );
    // Nulls are dropped where a merge patch would drop them; a null level is refused, as any bad quantity.
    context.ingest.handleMessage(
      'orderbook:eth',
      '{"last_update_id":null,"bids":{"2":"1.50"},"note":{"a":null,"b":[null]},"asks":{},"timestamp":"17"}',
    );
    // Stored as before: the payload's own field order, each side at its place, the symbol last.
    assert.equal(
      JSON.stringify(context.state.get('orderbook', 'ETH')),
      '{"bids":[[2,1.5]],"note":{"b":[null]},"asks":[],"timestamp":17,"symbol":"ETH"}',
    );
    context.ingest.handleMessage('orderbook:eth', '{"symbol":"sol","bids":{},"asks":{"3":2}}');
    assert.deepEqual(context.state.get('orderbook', 'SOL'), { symbol: 'SOL', bids: [], asks: [[3, 2]] });
  });

  test('with several faults, the first one the generic path met is the one reported', () => {
    const context = withBook();
    const refuse = (payload: string, message: string) => expectRefused(context, channel, payload, message);
    // Schema before everything, in the schema's order: missing fields, symbol, bids, asks, the rest.
    refuse(
      '{"bids":{"abc":1},"asks":{"1":"lots"}}',
      'invalid orderbook payload: /asks/1: Expected union value',
    );
    refuse('{"bids":{"1":"lots"}}', 'invalid orderbook payload: /asks: Expected required property');
    refuse(
      '{"bids":{"1":"lots"},"asks":{},"symbol":"A/B"}',
      "invalid orderbook payload: /symbol: Expected string to match '^[A-Za-z0-9._-]{1,32}$'",
    );
    refuse(
      '{"bids":{"1":"lots"},"asks":{},"timestamp":"x"}',
      'invalid orderbook payload: /bids/1: Expected union value',
    );
    // Then the copy, in the payload's order: unsafe keys, depth, then the numeric fields.
    refuse(
      '{"bids":{"abc":1,"constructor":1},"asks":{}}',
      'invalid orderbook payload: key "constructor" is not allowed',
    );
    refuse(
      '{"extra":{"__proto__":1},"bids":{"prototype":1},"asks":{}}',
      'invalid orderbook payload: key "__proto__" is not allowed',
    );
    refuse(
      '{"bids":{"abc":1},"asks":{},"last_update_id":"1e400"}',
      'invalid orderbook payload: last_update_id is not a finite number',
    );
    // Then the prices (bids before asks), then the symbol: a refused book takes no place under max_symbols.
    expectRefused(
      context,
      'orderbook',
      '{"bids":{"abc":1},"asks":{}}',
      'orderbook price "abc" is not a number',
    );
    expectRefused(
      context,
      'orderbook',
      '{"bids":{"1":1},"asks":{}}',
      'orderbook payload has no symbol and its channel names none',
    );
    refuse('{"bids":{"1":1,"x":1},"asks":{"y":1}}', 'orderbook price "x" is not a number');
    refuse('{"asks":{"y":1},"bids":{"1":1,"x":1}}', 'orderbook price "x" is not a number');
  });

  test('a key with a line break is not checked by the schema: dropped if null, else refused for its price', () => {
    const context = withBook();
    const refuse = (payload: string, message: string) => expectRefused(context, channel, payload, message);
    refuse('{"bids":{"1\\n":"lots"},"asks":{}}', 'orderbook price "1\\n" is not a number');
    refuse('{"bids":{"1\\n":{"a":[1]}},"asks":{}}', 'orderbook price "1\\n" is not a number');
    refuse(
      '{"bids":{"1\\n":{"constructor":1},"2":"1."},"asks":{}}',
      'invalid orderbook payload: /bids/2: Expected union value',
    );
    refuse(
      '{"bids":{"x":1,"1\\n":{"constructor":1}},"asks":{}}',
      'invalid orderbook payload: key "constructor" is not allowed',
    );
    refuse(
      `{"bids":{"1\\n":${'{"a":'.repeat(40)}1${'}'.repeat(40)}},"asks":{}}`,
      'invalid orderbook payload: nested deeper than 32',
    );
    context.ingest.handleMessage(channel, '{"bids":{"1\\n":null,"5":1},"asks":{}}');
    assert.deepEqual((context.state.get('orderbook', 'BTCUSDT') as JsonObject).bids, [[5, 1]]);
  });

  test('apply() refuses sides that are not plain objects, as the schema does', () => {
    const context = setup();
    for (const [payload, message] of [
      [{ bids: new Date(), asks: {} }, 'invalid orderbook payload: /bids: Expected object'],
      [{ bids: {}, asks: new Uint8Array(1) }, 'invalid orderbook payload: /asks: Expected object'],
    ] as const) {
      assert.throws(
        () => context.ingest.apply('orderbook', payload, 'BTC'),
        (error) => error instanceof PayloadError && error.message === message,
      );
    }
    assert.equal(context.state.sequence, 0);
  });

  test('ingest.max_symbols refuses a full book for a new symbol; a refused book does not take a place', () => {
    const context = setup(20, 2);
    const book = bookJson(largeSide(500, true), largeSide(500, false));
    context.ingest.handleMessage('orderbook:A', book);
    expectRefused(
      context,
      'orderbook:B',
      '{"bids":{"x":1},"asks":{}}',
      'orderbook price "x" is not a number',
    );
    context.ingest.handleMessage('orderbook:C', book);
    expectRefused(context, 'orderbook:B', book, 'symbol B refused: ingest.max_symbols (2) reached');
    assert.deepEqual([...context.state.keys('orderbook')].sort(), ['A', 'C']);
  });

  test('a side keeps its best levels, empty ones dropped; a bad level refuses the book', () => {
    const side = '{"1":"2","3":0,"2":1}';
    const shallow = setup(1);
    shallow.ingest.handleMessage('orderbook:BTC', `{"bids":${side},"asks":${side}}`);
    assert.deepEqual(shallow.state.get('orderbook', 'BTC'), {
      bids: [[2, 1]],
      asks: [[1, 2]],
      symbol: 'BTC',
    });
    const context = setup(5);
    context.ingest.handleMessage('orderbook:BTC', `{"bids":${side},"asks":${side}}`);
    const { bids, asks } = context.state.get('orderbook', 'BTC') as JsonObject;
    assert.deepEqual(bids, [
      [2, 1],
      [1, 2],
    ]);
    assert.deepEqual(asks, [
      [1, 2],
      [2, 1],
    ]);
    const refuses = (bids: string, message: string) =>
      expectRefused(context, 'orderbook:BTC', `{"bids":${bids},"asks":{}}`, message);
    refuses('{"1":"lots"}', 'invalid orderbook payload: /bids/1: Expected union value');
    refuses('{"x":1,"constructor":1}', 'invalid orderbook payload: key "constructor" is not allowed');
    refuses('{"1":1,"x":1}', 'orderbook price "x" is not a number');
  });
});
