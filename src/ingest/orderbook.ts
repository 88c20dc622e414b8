/**
 * An order book checked and reduced in one pass: a full book has thousands of levels of which only the best few
 * are kept, so each side is read once, every level validated and the best `depth` kept as it goes; the full sides
 * are never copied. A payload with several faults is refused for the one the generic path (schema check of every
 * level, normalize, then the best levels) would have met first, with the same message.
 */
import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { JsonObject } from '../merge-patch.ts';
import {
  copyWithoutNulls,
  numbersAsNumbers,
  type Prepared,
  RecordSize,
  UNBOUNDED,
  UNSAFE_KEYS,
  unsafeKeyError,
  withoutNulls,
} from './normalize.ts';
import { checkers, DECIMAL, NUMERIC_FIELDS, PayloadError, PayloadSchemas, schemaError } from './schemas.ts';

/** The orderbook payload with each side checked only for being an object: its levels are checked by the scan. */
const orderbookShapeChecker = TypeCompiler.Compile(
  Type.Object({ ...PayloadSchemas.orderbook.properties, bids: Type.Object({}), asks: Type.Object({}) }),
);

/**
 * Keys whose values typebox's `Type.Record(Type.String(), …)` checks (`.` stops at a line break). A level under
 * any other key is not refused by the schema but by its price, which cannot be a number.
 */
const RECORD_KEY = /^(.*)$/;

/** The estimated size of one kept book level, `[price,quantity],`. */
const LEVEL_SIZE = 20;

/**
 * typebox's Record check refuses a Date or a Uint8Array where `Type.Object({})` takes it. Neither comes out of
 * JSON.parse, but Ingest.apply() takes any value.
 */
function isBookSide(side: unknown): boolean {
  return !(side instanceof Date) && !(side instanceof Uint8Array);
}

function priceError(priceText: string): PayloadError {
  return new PayloadError('orderbook', `orderbook price ${JSON.stringify(priceText)} is not a number`);
}

/** One side of a book after its single pass. Faults are reported, not thrown: see prepareOrderbook. */
interface ScannedSide {
  /** The best levels, `[[price, quantity], …]`; incomplete if there is a fault. */
  levels: [number, number][];
  /** The first level whose quantity the schema's `Decimal` refuses; the pass stops there, the schema names it. */
  badQuantityAt?: string;
  /** What withoutNulls would have thrown copying this side: its first unsafe key (`__proto__`, …) or the like. */
  copyError?: PayloadError;
  /** The first key that is not a finite decimal number. */
  badPrice?: string;
}

/**
 * Validates every level of one side of a book and keeps the best `depth`: bids descending, asks ascending, empty
 * levels dropped; levels at the same price (`"100"` and `"100.0"`) stay in the order of the side's keys.
 */
function scanBookSide(side: Record<string, unknown>, depth: number, descending: boolean): ScannedSide {
  const scanned: ScannedSide = { levels: [] };
  // The best levels so far, best first, in two arrays: no pair allocated for a level that is not kept.
  const prices: number[] = [];
  const quantities: number[] = [];
  // Object.keys, like the schema and withoutNulls: own keys only, in the same order.
  const keys = Object.keys(side);
  for (let i = 0; i < keys.length; i++) {
    const priceText = keys[i];
    const value = side[priceText];
    // As the schema's `Decimal` (a finite number or a decimal string), and finite once a number.
    const quantity =
      typeof value === 'number'
        ? Number.isFinite(value)
          ? value
          : Number.NaN
        : typeof value === 'string' && DECIMAL.test(value) && Number.isFinite(Number(value))
          ? Number(value)
          : Number.NaN;
    if (Number.isNaN(quantity)) {
      if (RECORD_KEY.test(priceText)) {
        scanned.badQuantityAt = priceText;
        return scanned;
      }
      // The schema does not check a key with a line break: withoutNulls drops the level if null and copies it
      // otherwise (at depth 2: payload, side, level), then it is refused for its price.
      if (value === null) continue;
      if (typeof value === 'object' && !Array.isArray(value)) {
        try {
          withoutNulls(value as Record<string, unknown>, new RecordSize('orderbook', UNBOUNDED), 2);
        } catch (error) {
          scanned.copyError ??= error as PayloadError;
        }
      }
      scanned.badPrice ??= priceText;
      continue;
    }
    if (UNSAFE_KEYS.has(priceText)) {
      scanned.copyError ??= unsafeKeyError('orderbook', priceText);
      continue;
    }
    const price = Number(priceText);
    if (!DECIMAL.test(priceText) || !Number.isFinite(price)) {
      scanned.badPrice ??= priceText;
      continue;
    }
    if (!(quantity > 0)) continue;
    // Insertion into a short sorted list: cheaper than sorting a book of thousands of levels.
    // A level no better than the worst kept one, on a full list, changes nothing; a better one takes its place.
    const full = prices.length >= depth;
    const worst = prices[prices.length - 1];
    if (full && !(descending ? price > worst : price < worst)) continue;
    let index = full ? prices.length - 1 : prices.length;
    while (index > 0 && (descending ? price > prices[index - 1] : price < prices[index - 1])) {
      prices[index] = prices[index - 1];
      quantities[index] = quantities[index - 1];
      index--;
    }
    prices[index] = price;
    quantities[index] = quantity;
  }
  for (let i = 0; i < prices.length; i++) scanned.levels.push([prices[i], quantities[i]]);
  return scanned;
}

/**
 * What normalize() makes of any other payload, for a book: checked, copied without nulls, numbers as numbers, each
 * side replaced by its best `depth` levels at its place in the payload. Throws PayloadError (with its `limit` for
 * ingest.max_record_size); the symbol is the caller's, taken after this so that a refused book takes no place.
 */
export function prepareOrderbook(payload: unknown, depth: number, maxRecordSize: number): Prepared {
  if (!orderbookShapeChecker.Check(payload) || !isBookSide(payload.bids) || !isBookSide(payload.asks))
    throw schemaError('orderbook', payload);
  const sides = {
    bids: scanBookSide(payload.bids as Record<string, unknown>, depth, true),
    asks: scanBookSide(payload.asks as Record<string, unknown>, depth, false),
  };
  for (const name of ['bids', 'asks'] as const) {
    const at = sides[name].badQuantityAt;
    if (at === undefined) continue;
    // The schema names most bad quantities; a decimal string too large for a number ("1e400") it lets through.
    if (!checkers.orderbook.Check(payload)) throw schemaError('orderbook', payload);
    throw new PayloadError(
      'orderbook',
      `invalid orderbook payload: /${name}/${at}: quantity is not a finite number`,
    );
  }
  const size = new RecordSize('orderbook', maxRecordSize);
  const record: JsonObject = {};
  size.add(2);
  for (const [key, field] of Object.entries(payload)) {
    if (key === 'bids' || key === 'asks') {
      const { copyError, levels } = sides[key];
      if (copyError !== undefined) throw copyError;
      size.add(key.length + 6 + levels.length * LEVEL_SIZE);
      record[key] = levels;
    } else copyWithoutNulls(record, key, field, size, 0);
  }
  numbersAsNumbers(record, NUMERIC_FIELDS.orderbook, 'orderbook');
  for (const side of [sides.bids, sides.asks])
    if (side.badPrice !== undefined) throw priceError(side.badPrice);
  return { record, size: size.bytes };
}
