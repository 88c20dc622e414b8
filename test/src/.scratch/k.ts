import { Unpackr, unpack } from 'msgpackr';
import { decode, encode } from '/work/main/src/codec.ts';

const m = {
  ts: 1732000000000000,
  neg: -1732000000000000,
  f: 1.5,
  n: { a: [1, 'x', { b: null }] },
  big: 2 ** 53 - 1,
  u32: 2 ** 32 + 1,
};
const b = encode('msgpack', m);
console.log(b.length, b.byteOffset, b.buffer.byteLength);
console.log(decode(b, true), new Unpackr({ useRecords: false }).unpack(b), unpack(b));
const b2 = encode('msgpack', { x: 1 });
console.log(decode(b, true));
for (const bad of [
  Buffer.from([0xc1]),
  Buffer.from([0x92, 0x01]),
  Buffer.from([0x01, 0x02]),
  Buffer.from('{"a":1}'),
]) {
  try {
    console.log('ok', decode(bad, true));
  } catch (e) {
    console.log('throw', (e as Error).message);
  }
}
console.log(decode(new Uint8Array(Buffer.from('{"a":1}')).buffer, false));
