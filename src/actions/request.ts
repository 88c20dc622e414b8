/**
 * The `data` of a trading action as the web UI sends it, checked and turned into an ActionRequest. The typebox
 * schemas below are the validators; the rules across fields (a LIMIT needs a price) come after them. Only the
 * known fields are read into the request: unknown ones (`__proto__` included) are ignored, never copied.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { type TypeCheck, TypeCompiler } from '@sinclair/typebox/compiler';
import { ProtocolError } from '../hub/command.ts';
import { DECIMAL } from '../ingest/schemas.ts';
import { SYMBOL_PATTERN } from '../topics.ts';
import {
  ACTION_KINDS,
  type ActionKind,
  type ActionRequest,
  ORDER_SIDES,
  ORDER_TYPES,
  type OrderType,
  TIMES_IN_FORCE,
} from './types.ts';

const OneOf = <const T extends readonly string[]>(values: T) =>
  Type.Unsafe<T[number]>(Type.Union(values.map((value) => Type.Literal(value))));
/** Absent, or `null` (a client that writes every field): both mean "not given". */
const Optional = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]));
/** A number, or a decimal as text (`"0.5"`, the form inputs' value); its value is checked after conversion. */
const Amount = Type.Union([Type.Number(), Type.String({ pattern: DECIMAL.source, maxLength: 64 })]);
const SymbolName = Type.String({ pattern: SYMBOL_PATTERN.source });

const SCHEMAS = {
  'order.create': Type.Object({
    symbol: SymbolName,
    side: OneOf(ORDER_SIDES),
    type: OneOf(ORDER_TYPES),
    quantity: Amount,
    price: Optional(Amount),
    stopPrice: Optional(Amount),
    timeInForce: Optional(OneOf(TIMES_IN_FORCE)),
  }),
  'order.cancel': Type.Object({
    orderId: Type.String({ minLength: 1, maxLength: 128 }),
    symbol: Optional(SymbolName),
  }),
  'position.close': Type.Object({ symbol: SymbolName }),
};
type Schemas = typeof SCHEMAS;
const CHECKERS = Object.fromEntries(
  Object.entries(SCHEMAS).map(([kind, schema]) => [kind, TypeCompiler.Compile(schema)]),
) as { [K in ActionKind]: TypeCheck<Schemas[K]> };

const SYMBOL_RULE = 'a symbol like BTCUSDT (1 to 32 letters, digits, ".", "_" or "-")';
const AMOUNT_RULE = 'a finite number greater than 0 (a number or a decimal string like "0.5")';
/** What each field must be, for the one sentence that names it. */
const FIELD_RULES: Record<string, string> = {
  symbol: SYMBOL_RULE,
  side: `one of ${ORDER_SIDES.join(', ')}`,
  type: `one of ${ORDER_TYPES.join(', ')}`,
  quantity: AMOUNT_RULE,
  price: AMOUNT_RULE,
  stopPrice: AMOUNT_RULE,
  timeInForce: `one of ${TIMES_IN_FORCE.join(', ')}`,
  orderId: 'a string of 1 to 128 characters',
};

function invalid(kind: ActionKind, sentence: string): ProtocolError {
  return new ProtocolError('invalid_message', `${kind}: ${sentence}`);
}

/** The first schema error of `data` as one sentence naming the field. */
function schemaError(kind: ActionKind, data: unknown): ProtocolError {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return invalid(kind, 'data must be an object');
  }
  const error = CHECKERS[kind].Errors(data).First();
  // The path of a field's error is `/<field>` (a union's branches report the same path).
  const field = error?.path.split('/')[1] ?? '';
  const rule = FIELD_RULES[field];
  if (rule === undefined) return invalid(kind, 'data does not have the expected fields');
  const given = (data as Record<string, unknown>)[field];
  return invalid(kind, given === undefined ? `${field} is required (${rule})` : `${field} must be ${rule}`);
}

/** A checked amount as a finite number above 0. */
function amount(kind: ActionKind, field: string, value: number | string): number {
  const result = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(result) || result <= 0) throw invalid(kind, `${field} must be ${AMOUNT_RULE}`);
  return result;
}
const optionalAmount = (kind: ActionKind, field: string, value: number | string | null | undefined) =>
  value === undefined || value === null ? undefined : amount(kind, field, value);

const NEEDS_PRICE = new Set<OrderType>(['LIMIT', 'STOP_LIMIT']);
const NEEDS_STOP_PRICE = new Set<OrderType>(['STOP_LIMIT', 'STOP_MARKET']);

/** Whether `name` is one of the action kinds. */
export function isActionKind(name: unknown): name is ActionKind {
  return (ACTION_KINDS as readonly unknown[]).includes(name);
}

/**
 * Checks the `data` of an action of `kind` and returns the request; throws ProtocolError `invalid_message` with
 * one sentence naming the field for anything wrong (`unknown_action` for a kind that is none).
 */
export function parseActionRequest(kind: ActionKind, data: unknown): ActionRequest {
  if (!isActionKind(kind)) {
    throw new ProtocolError('unknown_action', `unknown action ${JSON.stringify(String(kind)).slice(0, 80)}`);
  }
  if (!CHECKERS[kind].Check(data)) throw schemaError(kind, data);
  switch (kind) {
    case 'order.create': {
      const fields = data as Static<Schemas['order.create']>;
      const request: ActionRequest = {
        kind,
        symbol: fields.symbol.toUpperCase(),
        side: fields.side,
        type: fields.type,
        quantity: amount(kind, 'quantity', fields.quantity),
      };
      const price = optionalAmount(kind, 'price', fields.price);
      const stopPrice = optionalAmount(kind, 'stopPrice', fields.stopPrice);
      if (price === undefined && NEEDS_PRICE.has(fields.type)) {
        throw invalid(kind, `price is required for a ${fields.type} order (${AMOUNT_RULE})`);
      }
      if (stopPrice === undefined && NEEDS_STOP_PRICE.has(fields.type)) {
        throw invalid(kind, `stopPrice is required for a ${fields.type} order (${AMOUNT_RULE})`);
      }
      if (price !== undefined) request.price = price;
      if (stopPrice !== undefined) request.stopPrice = stopPrice;
      if (fields.timeInForce !== undefined && fields.timeInForce !== null) {
        request.timeInForce = fields.timeInForce;
      }
      return request;
    }
    case 'order.cancel': {
      const fields = data as Static<Schemas['order.cancel']>;
      const request: ActionRequest = { kind, orderId: fields.orderId };
      if (fields.symbol !== undefined && fields.symbol !== null) request.symbol = fields.symbol.toUpperCase();
      return request;
    }
    case 'position.close': {
      const fields = data as Static<Schemas['position.close']>;
      return { kind, symbol: fields.symbol.toUpperCase() };
    }
  }
}
