import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decode } from '../../../src/codec.ts';
import { hubProtocol } from '../../../src/hub/protocols/hub.ts';

/** The hub protocol's frames, byte for byte as docs/protocol.md shows them (field order included). */

const at = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const text = (frame: Buffer | undefined) => frame?.toString('utf8');

describe('hub protocol frames', () => {
  const json = hubProtocol('json');

  test('snapshot and change', () => {
    assert.equal(
      text(
        json.snapshot({
          sequence: 7,
          epoch: 'e1',
          at,
          data: { account: { total_balance: 1 } },
          entry: () => undefined,
        }),
      ),
      '{"type":"state_update","sequence":7,"epoch":"e1","timestamp":"2026-01-02T03:04:05.678Z","data":{"account":{"total_balance":1}}}',
    );
    assert.equal(
      text(
        json.change({
          sequence: 9,
          baseSequence: 7,
          at,
          changes: { account: null },
          view: () => ({}),
          entry: () => undefined,
          before: () => undefined,
        }),
      ),
      '{"type":"diff_update","sequence":9,"base_sequence":7,"timestamp":"2026-01-02T03:04:05.678Z","changes":{"account":null}}',
    );
  });

  test('replies', () => {
    assert.equal(
      text(json.reply({ type: 'subscribed', subscriptions: ['orders'], sequence: 3 })),
      '{"type":"subscribed","subscriptions":["orders"],"sequence":3}',
    );
    assert.equal(
      text(json.reply({ type: 'pong', at })),
      '{"type":"pong","timestamp":"2026-01-02T03:04:05.678Z"}',
    );
    assert.equal(
      text(json.reply({ type: 'error', code: 'rate_limited', message: 'm' })),
      '{"type":"error","code":"rate_limited","message":"m"}',
    );
    assert.equal(
      text(json.reply({ type: 'authenticated', userId: 'u', expiresAt: undefined })),
      '{"type":"authenticated","user_id":"u","expires_at":null}',
    );
    assert.equal(
      text(json.reply({ type: 'authenticated', userId: 'u', expiresAt: at })),
      '{"type":"authenticated","user_id":"u","expires_at":"2026-01-02T03:04:05.678Z"}',
    );
  });

  test('MessagePack: the same messages, binary frames; one shared instance per format', () => {
    const packed = hubProtocol('msgpack');
    assert.equal(packed.sendOptions.binary, true);
    assert.equal(json.sendOptions.binary, false);
    assert.equal(hubProtocol('msgpack'), packed);
    assert.notEqual(packed.key, json.key);
    assert.deepEqual(decode(packed.reply({ type: 'pong', at })!, true), {
      type: 'pong',
      timestamp: '2026-01-02T03:04:05.678Z',
    });
    assert.deepEqual(packed.parse(Buffer.from('{"action":"resync"}'), false), { action: 'resync' });
  });
});
