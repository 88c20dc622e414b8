import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  buildFilter,
  filterIncludes,
  isTopic,
  KEYED_TOPICS,
  SYMBOL_SCOPED_TOPICS,
  subscriptionKey,
  TOPICS,
  TopicError,
  validateSubscription,
} from '../../src/topics.ts';

function expectTopicError(name: string): void {
  assert.throws(
    () => validateSubscription(name),
    (error: unknown) => {
      assert.ok(error instanceof TopicError);
      assert.equal(error.code, 'unknown_topic');
      assert.equal(error.topic, name);
      assert.ok(error.message.includes(JSON.stringify(name)));
      return true;
    },
  );
}

describe('validateSubscription', () => {
  test('accepts every topic name as is', () => {
    for (const topic of TOPICS) assert.equal(validateSubscription(topic), topic);
  });

  test('accepts symbol-scoped names and upper-cases the symbol', () => {
    assert.equal(validateSubscription('market_data:btcusdt'), 'market_data:BTCUSDT');
    assert.equal(validateSubscription('orderbook:EthUsdt'), 'orderbook:ETHUSDT');
    assert.equal(validateSubscription('trades:BTC-PERP_1.x'), 'trades:BTC-PERP_1.X');
    assert.equal(validateSubscription(`trades:${'A'.repeat(32)}`), `trades:${'A'.repeat(32)}`);
  });

  test('rejects a symbol on a topic that is not symbol-scoped', () => {
    for (const topic of ['orders', 'positions', 'account', 'strategies', 'system']) {
      expectTopicError(`${topic}:BTC`);
    }
  });

  test('rejects unknown topics', () => {
    for (const name of ['nope', '', 'MARKET_DATA', 'market data', 'nope:BTC', ':BTC']) expectTopicError(name);
  });

  test('rejects empty and malformed symbols', () => {
    for (const name of [
      'market_data:',
      'market_data:BTC/USDT',
      'market_data:BTC USDT',
      'market_data:a:b',
      'orderbook:*',
      `trades:${'A'.repeat(33)}`,
    ]) {
      expectTopicError(name);
    }
  });
});

describe('topic sets', () => {
  test('symbol-scoped topics are keyed topics', () => {
    for (const topic of SYMBOL_SCOPED_TOPICS) assert.ok(KEYED_TOPICS.has(topic));
    assert.equal(KEYED_TOPICS.has('account'), false);
    assert.equal(KEYED_TOPICS.has('system'), false);
  });

  test('isTopic', () => {
    assert.equal(isTopic('orders'), true);
    assert.equal(isTopic('order'), false);
    assert.equal(isTopic('toString'), false);
  });
});

describe('buildFilter', () => {
  test('whole topics map to all, symbols to a set', () => {
    const filter = buildFilter(['orders', 'market_data:BTC', 'market_data:ETH', 'account']);
    assert.equal(filter.get('orders'), 'all');
    assert.equal(filter.get('account'), 'all');
    assert.deepEqual(filter.get('market_data'), new Set(['BTC', 'ETH']));
    assert.equal(filter.has('positions'), false);
    assert.equal(filter.size, 3);
  });

  test('a whole topic wins over its symbols, in either order', () => {
    assert.equal(buildFilter(['trades:BTC', 'trades', 'trades:ETH']).get('trades'), 'all');
    assert.equal(buildFilter(['trades', 'trades:BTC']).get('trades'), 'all');
    assert.equal(buildFilter(['trades:BTC', 'trades']).get('trades'), 'all');
  });

  test('an empty set gives an empty filter', () => {
    assert.equal(buildFilter([]).size, 0);
  });
});

describe('subscriptionKey', () => {
  test('does not depend on order', () => {
    const a = subscriptionKey(['orders', 'market_data:BTC', 'account']);
    const b = subscriptionKey(new Set(['account', 'orders', 'market_data:BTC']));
    assert.equal(a, b);
  });

  test('differs for different sets', () => {
    assert.notEqual(subscriptionKey(['orders']), subscriptionKey(['orders', 'account']));
    assert.notEqual(subscriptionKey(['market_data:BTC']), subscriptionKey(['market_data']));
    assert.equal(subscriptionKey([]), '');
  });
});

describe('filterIncludes', () => {
  const filter = buildFilter(['market_data:BTC', 'orders', 'account']);

  test('a whole keyed topic includes every key', () => {
    assert.equal(filterIncludes(filter, 'orders', 'any-id'), true);
  });

  test('a symbol-scoped topic includes only its symbols', () => {
    assert.equal(filterIncludes(filter, 'market_data', 'BTC'), true);
    assert.equal(filterIncludes(filter, 'market_data', 'ETH'), false);
  });

  test('a single-object topic includes its one key', () => {
    assert.equal(filterIncludes(filter, 'account', ''), true);
  });

  test('a topic not in the filter includes nothing', () => {
    assert.equal(filterIncludes(filter, 'positions', 'BTC'), false);
    assert.equal(filterIncludes(filter, 'system', ''), false);
  });
});
