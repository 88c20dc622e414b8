import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Ingest } from '../../src/ingest/ingest.ts';
import { PayloadError } from '../../src/ingest/schemas.ts';
import { StateStore } from '../../src/state.ts';
import { INGEST_TOPICS } from '../../src/topics.ts';

function setup(maxSymbols = 1000) {
  const state = new StateStore();
  const ingest = new Ingest(state, {
    orderbookDepth: 20,
    tradesKept: 50,
    terminalOrderRetention: 60_000,
    maxMessageSize: 1 << 20,
    maxSymbols,
  });
  return { state, ingest };
}

describe('Ingest against hostile input', () => {
  test('prototype-pollution keys are refused at any depth and never reach Object.prototype', () => {
    const { state, ingest } = setup();
    const payloads = [
      '{"last_price":1,"__proto__":{"polluted":true}}',
      '{"last_price":1,"extra":{"constructor":{"prototype":{"polluted":true}}}}',
      '{"total_balance":1,"balances":{"__proto__":1}}',
    ];
    const channels = ['market_data:BTC', 'market_data:BTC', 'account:main'];
    for (const [index, payload] of payloads.entries()) {
      assert.throws(() => ingest.handleMessage(channels[index], payload), PayloadError);
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(state.sequence, 0);
  });

  test('ingest.max_symbols refuses new symbol names past the limit, keeps updating known ones', () => {
    const { state, ingest } = setup(3);
    for (const symbol of ['A', 'B', 'C']) ingest.handleMessage(`market_data:${symbol}`, '{"last_price":1}');
    assert.throws(() => ingest.handleMessage('orderbook:D', '{"bids":{},"asks":{}}'), /max_symbols/);
    assert.throws(
      () => ingest.handleMessage('trades:E', '{"trade_id":1,"price":1,"quantity":1,"timestamp":1}'),
      /max_symbols/,
    );
    ingest.handleMessage('orderbook:A', '{"bids":{"1":1},"asks":{}}');
    ingest.handleMessage('market_data:C', '{"last_price":2}');
    assert.deepEqual([...state.keys('market_data')].sort(), ['A', 'B', 'C']);
    assert.equal(ingest.counters.invalid.redis.orderbook, 1);
  });

  test('random bytes, random JSON and deep nesting never throw anything but PayloadError, never half-apply', () => {
    const { state, ingest } = setup();
    const channel = fc.constantFrom(...INGEST_TOPICS.map((t) => `${t}:SYM`), 'bogus:x', 'nocolon');
    const payload = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
      fc.jsonValue({ maxDepth: 6 }).map((value) => JSON.stringify(value)),
      fc.string({ maxLength: 300 }),
      fc.integer({ min: 1, max: 5000 }).map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`),
    );
    fc.assert(
      fc.property(channel, payload, (name, body) => {
        const before = state.sequence;
        try {
          ingest.handleMessage(name, body);
          // Accepted: exactly one change was applied (or none, for a trade older than every kept one).
          assert.ok(state.sequence - before <= 1);
        } catch (error) {
          assert.ok(error instanceof PayloadError, `unexpected ${String(error)}`);
          assert.equal(state.sequence, before);
        }
      }),
      { numRuns: 2000 },
    );
    assert.equal(({} as Record<string, unknown>).a, undefined);
  });
});
