import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Unpackr, unpack } from 'msgpackr';
import { decode, encode, FORMATS, isBinary } from '../../src/codec.ts';

const sample = {
  type: 'diff_update',
  sequence: 42,
  base_sequence: 41,
  timestamp: '2024-11-19T07:06:40.000Z',
  changes: {
    market_data: {
      BTCUSDT: {
        last_price: 97123.45,
        updated_at: 1_732_000_000_000_000,
        volume_24h: 12345.678,
        tiny: 1e-8,
        negative: -1_732_000_000_000_000,
        u32: 2 ** 32 + 1,
        max_safe: Number.MAX_SAFE_INTEGER,
        small: -7,
      },
    },
    orders: { 'id-1': null, 'id-2': { state: 'NEW', tags: ['a', 'b'], nested: { deep: { flag: true } } } },
    trades: { ETHUSDT: [{ trade_id: 1, price: 3000.5 }] },
    empty: {},
    list: [],
    text: 'ünïcødé ✓',
  },
};

describe('encode/decode round-trip', () => {
  for (const format of FORMATS) {
    test(`${format} keeps the value, including integers above 2^32 and floats`, () => {
      const frame = encode(format, sample);
      assert.ok(Buffer.isBuffer(frame));
      assert.deepEqual(decode(frame, isBinary(format)), sample);
    });
  }

  test('json is a UTF-8 text frame', () => {
    const frame = encode('json', sample);
    assert.equal(frame.toString('utf8'), JSON.stringify(sample));
    assert.deepEqual(decode(frame.toString('utf8'), false), sample);
  });

  test('decode accepts an ArrayBuffer and a Uint8Array view at an offset', () => {
    const json = Buffer.from(JSON.stringify({ a: 1 }));
    const arrayBuffer = new Uint8Array(json).buffer;
    assert.deepEqual(decode(arrayBuffer, false), { a: 1 });
    const padded = Buffer.concat([Buffer.from('xxxx'), json]);
    assert.deepEqual(decode(padded.subarray(4), false), { a: 1 });
    assert.deepEqual(decode(new Uint8Array(padded.buffer, padded.byteOffset + 4, json.byteLength), false), {
      a: 1,
    });
    const packed = encode('msgpack', { b: [1, 2] });
    const packedCopy = new Uint8Array(packed).buffer;
    assert.deepEqual(decode(packedCopy, true), { b: [1, 2] });
  });

  test('an earlier msgpack frame is not overwritten by later encodes', () => {
    const first = encode('msgpack', sample);
    const firstCopy = Buffer.from(first);
    for (let i = 0; i < 200; i++) encode('msgpack', { i, filler: 'x'.repeat(100) });
    assert.ok(first.equals(firstCopy));
    assert.deepEqual(decode(first, true), sample);
  });

  test('malformed input throws', () => {
    assert.throws(() => decode('{not json', false));
    assert.throws(() => decode(Buffer.from('{"a":'), false));
    assert.throws(() => decode(Buffer.from([0x92, 0x01]), true)); // array of 2 holding 1 item
    assert.throws(() => decode(Buffer.from('{"a":1}'), true)); // trailing bytes after a msgpack value
  });
});

describe('msgpack is standard MessagePack', () => {
  test('a plain Unpackr without records decodes it', () => {
    const frame = encode('msgpack', sample);
    assert.deepEqual(new Unpackr({ useRecords: false }).unpack(frame), sample);
    assert.deepEqual(unpack(frame), sample);
  });

  test('repeated object shapes do not use the records extension', () => {
    const rows = Array.from({ length: 5 }, (_, i) => ({ id: i, price: i + 0.5 }));
    const frame = encode('msgpack', rows);
    assert.deepEqual(new Unpackr({ useRecords: false }).unpack(frame), rows);
    // A fixarray of 5 whose first item is a map (fixmap, map16 or map32), not an extension (records are ext 0x72).
    assert.equal(frame[0], 0x95);
    assert.ok(
      (frame[1] >= 0x80 && frame[1] <= 0x8f) || frame[1] === 0xde || frame[1] === 0xdf,
      `0x${frame[1].toString(16)}`,
    );
    for (const ext of [0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8])
      assert.equal(frame.includes(ext), false);
  });

  test('a microsecond timestamp decodes to the same number', () => {
    const frame = encode('msgpack', { t: 1_732_000_000_000_000 });
    const decoded = new Unpackr({ useRecords: false }).unpack(frame) as { t: unknown };
    assert.equal(typeof decoded.t, 'number');
    assert.equal(decoded.t, 1_732_000_000_000_000);
  });

  test('frames from a plain msgpackr encoder decode', async () => {
    const { pack } = await import('msgpackr');
    assert.deepEqual(decode(pack({ action: 'ping', n: [1, 2] }), true), { action: 'ping', n: [1, 2] });
  });
});

describe('isBinary', () => {
  test('msgpack is binary, json is text', () => {
    assert.equal(isBinary('msgpack'), true);
    assert.equal(isBinary('json'), false);
  });
});
