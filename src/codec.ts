import { Packr } from 'msgpackr';

export const FORMATS = ['json', 'msgpack'] as const;
export type Format = (typeof FORMATS)[number];

/**
 * Standard MessagePack that any decoder reads: msgpackr's records extension is off (it is on by default, and
 * only msgpackr decodes it).
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** Encodes one server message once; the Buffer is then sent to every client of the same format. */
export function encode(format: Format, message: unknown): Buffer {
  return format === 'json' ? Buffer.from(JSON.stringify(message)) : packr.pack(message);
}

/** Whether a frame of this format goes out as binary (MessagePack) or text (JSON). */
export function isBinary(format: Format): boolean {
  return format === 'msgpack';
}

/** Decodes a frame from a peer: binary frames are MessagePack, text frames JSON. Throws on malformed input. */
export function decode(data: Buffer | ArrayBuffer | Uint8Array | string, binary: boolean): unknown {
  if (typeof data === 'string') return JSON.parse(data);
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
  if (binary) return packr.unpack(bytes);
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
}
