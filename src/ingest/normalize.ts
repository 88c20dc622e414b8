/**
 * The bounded copy of a payload: null fields dropped, numbers as numbers, and refused as soon as it is unsafe
 * (prototype keys, nesting, non-finite numbers) or larger than ingest.max_record_size. The work on a refused
 * payload is bounded by the limit, not by the payload.
 */
import type { Json, JsonObject } from '../merge-patch.ts';
import { PayloadError } from './schemas.ts';

/** A payload that passed every check, ready to be written, with its estimated size. */
export interface Prepared {
  record: JsonObject;
  size: number;
}

/** Keys that would reach an object's prototype when assigned: refused wherever they appear in a payload. */
export const UNSAFE_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Deeper objects or arrays than this in a payload are refused (no backend nests that far; a hostile one could). */
const MAX_DEPTH = 32;

/** A size nothing reaches: for copies whose size is not checked (a nested level of a book being refused). */
export const UNBOUNDED = Number.POSITIVE_INFINITY;

export function toNumber(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

export function unsafeKeyError(topic: string, key: string): PayloadError {
  return new PayloadError(topic, `invalid ${topic} payload: key ${JSON.stringify(key)} is not allowed`);
}

function depthError(topic: string): PayloadError {
  return new PayloadError(topic, `invalid ${topic} payload: nested deeper than ${MAX_DEPTH}`);
}

/**
 * The size a copy has reached, checked against ingest.max_record_size as it grows, so that a copy stops as soon as
 * its record is too large.
 *
 * The size estimates the record's JSON text: a string by its length plus quotes, a number as 8 bytes, `true`,
 * `false` and `null` as 5, 5 and 4, and one byte per separator. It is what the state's budget adds up.
 */
export class RecordSize {
  bytes = 0;
  readonly topic: string;
  readonly max: number;
  constructor(topic: string, max: number) {
    this.topic = topic;
    this.max = max;
  }

  add(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.max) {
      throw new PayloadError(
        this.topic,
        `${this.topic} record of more than ${this.max} bytes refused: ingest.max_record_size`,
        'max_record_size',
      );
    }
  }
}

function scalarSize(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2;
    case 'number':
      return 8;
    case 'boolean':
      return 5;
    default:
      return 4;
  }
}

/**
 * Copies an object, dropping null fields at every depth of objects (a merge patch cannot carry a null value), and
 * refusing what no client could be sent: unsafe keys, objects or arrays nested deeper than MAX_DEPTH, numbers that
 * are not finite (JSON.parse turns 1e400 into Infinity, which JSON sends as null), and a record over its size.
 */
export function withoutNulls(value: Record<string, unknown>, size: RecordSize, depth = 0): JsonObject {
  if (depth > MAX_DEPTH) throw depthError(size.topic);
  size.add(2);
  const result: JsonObject = {};
  for (const [key, field] of Object.entries(value)) copyWithoutNulls(result, key, field, size, depth);
  return result;
}

/** Copies one field of an object at `depth` into `result` the way withoutNulls does. */
export function copyWithoutNulls(
  result: JsonObject,
  key: string,
  field: unknown,
  size: RecordSize,
  depth: number,
): void {
  if (UNSAFE_KEYS.has(key)) throw unsafeKeyError(size.topic, key);
  if (field === null) return;
  size.add(key.length + 4);
  result[key] = copyValue(field, size, depth + 1, key);
}

/** A copy of one value found at `depth` (named `name` for an error), checked like withoutNulls checks objects. */
function copyValue(value: unknown, size: RecordSize, depth: number, name: string): Json {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new PayloadError(size.topic, `invalid ${size.topic} payload: ${name} is not a finite number`);
    }
    size.add(scalarSize(value));
    return value as Json;
  }
  if (!Array.isArray(value)) return withoutNulls(value as Record<string, unknown>, size, depth);
  if (depth > MAX_DEPTH) throw depthError(size.topic);
  size.add(2);
  // Nulls stay in arrays: a merge patch replaces an array whole.
  const copy: Json[] = new Array(value.length);
  for (let index = 0; index < value.length; index++) {
    size.add(1);
    copy[index] = copyValue(value[index], size, depth + 1, name);
  }
  return copy;
}

/** Turns the numeric fields of a copied payload into numbers, in place. */
export function numbersAsNumbers(record: JsonObject, numericFields: readonly string[], topic: string): void {
  for (const field of numericFields) {
    if (record[field] === undefined) continue;
    const value = toNumber(record[field]);
    // "1e400" and 1e400 are Infinity, which JSON turns into null: a deletion for a client.
    if (!Number.isFinite(value))
      throw new PayloadError(topic, `invalid ${topic} payload: ${field} is not a finite number`);
    record[field] = value;
  }
}

/** Copies a payload without null fields and with numbers as numbers. */
export function normalize(
  payload: Record<string, unknown>,
  numericFields: readonly string[],
  size: RecordSize,
): JsonObject {
  const result = withoutNulls(payload, size);
  numbersAsNumbers(result, numericFields, size.topic);
  return result;
}

/**
 * The values of a map of decimals (an account's `balances`, risk's `position_concentration`) as numbers; a decimal
 * string too large for a number ("1e400") is refused, as on every field.
 */
export function numericMap(record: JsonObject, field: string, topic: string): void {
  if (record[field] === undefined) return;
  const map: JsonObject = {};
  for (const [key, amount] of Object.entries(record[field] as JsonObject)) {
    const value = toNumber(amount);
    if (!Number.isFinite(value))
      throw new PayloadError(topic, `invalid ${topic} payload: ${field}.${key} is not a finite number`);
    map[key] = value;
  }
  record[field] = map;
}

/** A record's size once its `symbol` is set to `symbol` (added when the payload had none). */
export function withSymbolSize(record: JsonObject, size: number, symbol: string): number {
  return record.symbol === undefined ? size + symbol.length + 12 : size;
}
