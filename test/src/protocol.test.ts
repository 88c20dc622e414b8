import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encode } from '../../src/codec.ts';
import { type Command, type ErrorCode, ProtocolError } from '../../src/hub/command.ts';
import { MAX_SUBSCRIPTIONS, parseClientMessage } from '../../src/hub/protocols/hub.ts';
import { validateSubscription } from '../../src/topics.ts';

function json(message: unknown): string {
  return JSON.stringify(message);
}

function parseJson(message: unknown): Command {
  return parseClientMessage(json(message), false);
}

function expectError(code: ErrorCode, data: Buffer | string, binary = false): ProtocolError {
  let caught: unknown;
  try {
    parseClientMessage(data, binary);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ProtocolError, `expected a ProtocolError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

describe('parseClientMessage: actions', () => {
  test('subscribe and unsubscribe', () => {
    assert.deepEqual(parseJson({ action: 'subscribe', subscriptions: ['orders', 'market_data:btcusdt'] }), {
      action: 'subscribe',
      subscriptions: ['orders', 'market_data:BTCUSDT'],
    });
    assert.deepEqual(parseJson({ action: 'unsubscribe', subscriptions: ['orders'] }), {
      action: 'unsubscribe',
      subscriptions: ['orders'],
    });
    assert.deepEqual(parseJson({ action: 'subscribe', subscriptions: [] }), {
      action: 'subscribe',
      subscriptions: [],
    });
  });

  test('resync and ping', () => {
    assert.deepEqual(parseJson({ action: 'resync' }), { action: 'resync' });
    assert.deepEqual(parseJson({ action: 'ping' }), { action: 'ping' });
  });

  test('accepts a Buffer holding a JSON text frame', () => {
    assert.deepEqual(parseClientMessage(Buffer.from(json({ action: 'ping' })), false), { action: 'ping' });
  });

  test('removes duplicates, also those that differ only in symbol case', () => {
    const command = parseJson({
      action: 'subscribe',
      subscriptions: ['orders', 'orders', 'trades:eth', 'trades:ETH', 'trades:Eth', 'account'],
    });
    assert.deepEqual(command, { action: 'subscribe', subscriptions: ['orders', 'trades:ETH', 'account'] });
  });

  test('accepts exactly the maximum number of subscriptions', () => {
    const names = Array.from({ length: MAX_SUBSCRIPTIONS }, (_, i) => `trades:S${i}`);
    const command = parseJson({ action: 'subscribe', subscriptions: names });
    assert.equal(command.action, 'subscribe');
    assert.equal((command as { subscriptions: string[] }).subscriptions.length, MAX_SUBSCRIPTIONS);
  });

  test('extra fields are ignored', () => {
    assert.deepEqual(parseJson({ action: 'ping', id: 7 }), { action: 'ping' });
  });
});

describe('parseClientMessage: legacy web UI forms', () => {
  test('type subscribe / unsubscribe with channels', () => {
    assert.deepEqual(parseJson({ type: 'subscribe', channels: ['market_data', 'orderbook:btcusdt'] }), {
      action: 'subscribe',
      subscriptions: ['market_data', 'orderbook:BTCUSDT'],
    });
    assert.deepEqual(parseJson({ type: 'unsubscribe', channels: ['market_data'] }), {
      action: 'unsubscribe',
      subscriptions: ['market_data'],
    });
  });

  test('type refresh is a resync', () => {
    assert.deepEqual(parseJson({ type: 'refresh' }), { action: 'resync' });
    assert.deepEqual(parseJson({ type: 'refresh', channels: ['orders'] }), { action: 'resync' });
  });

  test('type ping', () => {
    assert.deepEqual(parseJson({ type: 'ping' }), { action: 'ping' });
  });

  test('unknown topics in channels', () => {
    expectError('unknown_topic', json({ type: 'subscribe', channels: ['nope'] }));
  });
});

describe('parseClientMessage: MessagePack frames', () => {
  test('binary frames are decoded as MessagePack', () => {
    assert.deepEqual(
      parseClientMessage(encode('msgpack', { action: 'subscribe', subscriptions: ['trades:btc'] }), true),
      { action: 'subscribe', subscriptions: ['trades:BTC'] },
    );
    assert.deepEqual(parseClientMessage(encode('msgpack', { type: 'refresh' }), true), { action: 'resync' });
    assert.deepEqual(parseClientMessage(encode('msgpack', { action: 'ping' }), true), { action: 'ping' });
  });

  test('a binary frame that is not MessagePack', () => {
    const error = expectError('invalid_message', Buffer.from([0x92, 0x01]), true);
    assert.match(error.message, /MessagePack/);
    expectError('invalid_message', Buffer.from(json({ action: 'ping' })), true);
  });

  test('MessagePack that is not a message', () => {
    expectError('invalid_message', encode('msgpack', [1, 2, 3]), true);
    expectError('invalid_message', encode('msgpack', 'ping'), true);
    expectError('unknown_action', encode('msgpack', { action: 'dance' }), true);
  });
});

describe('parseClientMessage: errors', () => {
  test('not JSON', () => {
    const error = expectError('invalid_message', '{"action": ');
    assert.match(error.message, /JSON/);
    expectError('invalid_message', '');
    expectError('invalid_message', Buffer.from([0xff, 0xfe]));
  });

  test('JSON that is not an object', () => {
    for (const value of [null, 42, 'ping', true, [1, 2, 3], ['subscribe'], []]) {
      expectError('invalid_message', json(value));
    }
  });

  test('no action at all', () => {
    expectError('invalid_message', json({}));
    expectError('invalid_message', json({ subscriptions: ['orders'] }));
  });

  test('wrong types', () => {
    expectError('invalid_message', json({ action: 'subscribe' }));
    expectError('invalid_message', json({ action: 'subscribe', subscriptions: 'orders' }));
    expectError('invalid_message', json({ action: 'subscribe', subscriptions: [1, 2] }));
    expectError('invalid_message', json({ action: 'subscribe', subscriptions: [''] }));
    expectError('invalid_message', json({ action: 'subscribe', subscriptions: ['x'.repeat(65)] }));
    expectError('invalid_message', json({ action: 'subscribe', subscriptions: [null] }));
    expectError('invalid_message', json({ type: 'subscribe', channels: { 0: 'orders' } }));
    expectError('invalid_message', json({ type: 'refresh', channels: 'orders' }));
    expectError('invalid_message', json({ action: 42 }));
  });

  test('too many subscriptions', () => {
    const names = Array.from({ length: MAX_SUBSCRIPTIONS + 1 }, () => 'orders');
    expectError('invalid_message', json({ action: 'subscribe', subscriptions: names }));
    expectError('invalid_message', json({ type: 'subscribe', channels: names }));
  });

  test('unknown actions', () => {
    const error = expectError('unknown_action', json({ action: 'dance' }));
    assert.match(error.message, /"dance"/);
    expectError('unknown_action', json({ type: 'dance' }));
    expectError('unknown_action', json({ action: 'SUBSCRIBE', subscriptions: [] }));
    // A long unknown action is cut short in the message.
    const long = expectError('unknown_action', json({ action: 'x'.repeat(1000) }));
    assert.ok(long.message.length < 200, long.message);
  });

  test('unknown topics', () => {
    const error = expectError(
      'unknown_topic',
      json({ action: 'subscribe', subscriptions: ['orders', 'nope'] }),
    );
    assert.match(error.message, /nope/);
    expectError('unknown_topic', json({ action: 'subscribe', subscriptions: ['orders:BTC'] }));
    expectError('unknown_topic', json({ action: 'unsubscribe', subscriptions: ['market_data:'] }));
    expectError('unknown_topic', json({ action: 'subscribe', subscriptions: ['market_data:a/b'] }));
  });
});

describe('parseClientMessage: messages mixing both forms', () => {
  // Each of these matches one schema branch through its `type` field (extra fields are allowed), but the
  // verb is then read from `action`. With the former src/protocol.ts the first throws a TypeError (not a
  // ProtocolError, so Broadcaster.receive rethrows it out of the socket's message handler) and the others
  // return commands whose action is not one of the four.
  const mixed = [
    { type: 'refresh', action: 'subscribe' },
    { type: 'ping', action: 'unsubscribe' },
    { type: 'ping', action: 'dance' },
    { type: 'refresh', action: 5 },
  ];
  for (const message of mixed) {
    test(`${json(message)} gives a valid command or a ProtocolError`, () => {
      let result: unknown;
      try {
        result = parseJson(message);
      } catch (error) {
        assert.ok(error instanceof ProtocolError, `threw ${String(error)}`);
        return;
      }
      assertValidCommand(result);
    });
  }

  test('both forms agreeing are accepted', () => {
    assert.deepEqual(parseJson({ action: 'ping', type: 'ping' }), { action: 'ping' });
  });
});

function assertValidCommand(result: unknown): void {
  const command = result as Command;
  assert.ok(['subscribe', 'unsubscribe', 'resync', 'ping'].includes(command.action), json(command));
  if (command.action === 'subscribe' || command.action === 'unsubscribe') {
    assert.ok(Array.isArray(command.subscriptions));
    for (const name of command.subscriptions) assert.equal(validateSubscription(name), name);
    assert.equal(new Set(command.subscriptions).size, command.subscriptions.length);
  }
}

describe('property: any frame gives a valid command or a ProtocolError', () => {
  const verb = fc.constantFrom('subscribe', 'unsubscribe', 'resync', 'ping', 'refresh', 'dance', 5, null);
  const names = fc.oneof(
    fc.array(fc.constantFrom('orders', 'trades:btc', 'market_data:ETH', 'nope', 'orders:X', '', 1), {
      maxLength: 4,
    }),
    fc.constantFrom('orders', null, 3),
  );
  const message = fc.record(
    { action: verb, type: verb, subscriptions: names, channels: names },
    { requiredKeys: [], noNullPrototype: true },
  );

  test('for random mixes of the two message forms', () => {
    fc.assert(
      fc.property(message, fc.boolean(), (value, binary) => {
        const frame = binary ? encode('msgpack', value) : json(value);
        let result: unknown;
        try {
          result = parseClientMessage(frame, binary);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, `${json(value)} threw ${String(error)}`);
          return;
        }
        assertValidCommand(result);
      }),
      { numRuns: 300 },
    );
  });
});
