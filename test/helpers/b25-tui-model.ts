/**
 * A model of the b25 terminal UI's WebSocket client (itziklerner-pag/b25, ui/terminal/src, Rust), so tests
 * can check frames the hub sends against what that client really accepts. Written from its sources, not
 * copied: websocket.rs (the `DashboardMessage` it parses, the `ClientMessage` it sends), types.rs (the
 * structs inside), state.rs (what it keeps), config.rs (defaults).
 *
 * `parseDashboardMessage` answers what `serde_json::from_str::<DashboardMessage>(&text)` answers
 * (websocket.rs:136): serde 1.x derive + serde_json 1.x + chrono 0.4 with its `serde` feature (Cargo.toml
 * pins only `chrono = "0.4"`, so a fresh build takes the newest 0.4, whose `DateTime` parser is the relaxed
 * RFC 3339 one modelled below). A frame that fails is logged and dropped by the client
 * (websocket.rs:149-152): it never reaches the screen.
 */

// ---------------------------------------------------------------------------------------------------------
// Types mirroring types.rs (field names are the Rust ones: no #[serde(rename)] on any struct field).

/** types.rs:15-19 */
export type PositionSide = 'Long' | 'Short';
/** types.rs:34-38 */
export type OrderSide = 'Buy' | 'Sell';
/** types.rs:40-46 */
export type OrderType = 'Limit' | 'Market' | 'StopLimit' | 'StopMarket';
/** types.rs:48-55 */
export type OrderStatus = 'New' | 'PartiallyFilled' | 'Filled' | 'Canceled' | 'Rejected';
/** types.rs:122-127 */
export type SignalType = 'Long' | 'Short' | 'Neutral';
/** types.rs:137-142 */
export type AlertLevel = 'Info' | 'Warning' | 'Error';

/**
 * A `chrono::DateTime<Utc>` as the client holds it. `nanosecond` is chrono's: 1_000_000_000 and up marks a
 * leap second (`:60`). `epochMillis` is chrono's `timestamp_millis()`; `text` is the string that was sent.
 */
export interface DateTimeUtc {
  readonly epochSeconds: number;
  readonly nanosecond: number;
  readonly epochMillis: number;
  readonly text: string;
}

/** types.rs:4-13 */
export interface Position {
  symbol: string;
  size: number;
  entry_price: number;
  current_price: number;
  side: PositionSide;
  unrealized_pnl: number;
  pnl_percent: number;
}

/** types.rs:21-32 */
export interface Order {
  id: string;
  symbol: string;
  side: OrderSide;
  order_type: OrderType;
  price: number;
  size: number;
  filled_size: number;
  status: OrderStatus;
  timestamp: DateTimeUtc;
}

/** types.rs:57-63: bids and asks are `Vec<(f64, f64)>`, (price, size) pairs. */
export interface OrderBook {
  symbol: string;
  bids: [number, number][];
  asks: [number, number][];
  timestamp: DateTimeUtc;
}

/** types.rs:98-109 */
export interface Fill {
  id: string;
  order_id: string;
  symbol: string;
  side: OrderSide;
  price: number;
  size: number;
  fee: number;
  pnl: number;
  timestamp: DateTimeUtc;
}

/** types.rs:111-120 */
export interface Signal {
  id: string;
  strategy: string;
  symbol: string;
  signal_type: SignalType;
  strength: number;
  target_price: number;
  timestamp: DateTimeUtc;
}

/** types.rs:129-135 */
export interface Alert {
  id: string;
  level: AlertLevel;
  message: string;
  timestamp: DateTimeUtc;
}

/** websocket.rs:11-34: `#[serde(tag = "type")]`, one `data` field per variant, `ping` has an i64. */
export type DashboardMessage =
  | { type: 'positions'; data: Position[] }
  | { type: 'orders'; data: Order[] }
  | { type: 'orderbook'; data: OrderBook }
  | { type: 'fills'; data: Fill[] }
  | { type: 'signals'; data: Signal[] }
  | { type: 'alerts'; data: Alert[] }
  | { type: 'ping'; timestamp: number };

export type ParseResult = { ok: true; message: DashboardMessage } | { ok: false; error: string };

/** config.rs:68: the default `dashboard_url` is `ws://localhost:8080/ws`: no query string, no token. */
export const TUI_PATH = '/ws';

/** websocket.rs:105-114: the channels of the one subscribe message it sends on connect. */
export const TUI_CHANNELS = ['positions', 'orders', 'orderbook', 'fills', 'signals', 'alerts'] as const;

/**
 * websocket.rs:105-117: `serde_json::to_string(&ClientMessage::Subscribe { channels })`, an internally
 * tagged enum (websocket.rs:36-40), so the tag comes first. It is the only frame the client ever sends:
 * `ClientMessage::Pong` (websocket.rs:42-43) is never constructed, and protocol pings get protocol pongs
 * (websocket.rs:159-161).
 */
export const TUI_SUBSCRIBE = JSON.stringify({ type: 'subscribe', channels: TUI_CHANNELS });

/** config.rs:81-83: `max_fills_display`, `max_signals_display`, `max_alerts_display` defaults. */
export const TUI_DEFAULT_CAPS = { maxFills: 50, maxSignals: 20, maxAlerts: 100 } as const;

// ---------------------------------------------------------------------------------------------------------
// serde_json's reader. The client's frames go through serde's `Content` buffer (internally tagged enum:
// serde/src/private/de.rs `TaggedContentVisitor`), so every value in the frame is read with
// `deserialize_any`, ignored fields included: the syntax rules below apply to the whole frame.

class SerdeError extends Error {}

type Node =
  | { k: 'null' }
  | { k: 'bool'; v: boolean }
  /** an integer literal 0..=u64::MAX (serde_json `ParserNumber::U64`) */
  | { k: 'u64'; v: bigint }
  /** a negative integer literal i64::MIN..=-1 (`ParserNumber::I64`) */
  | { k: 'i64'; v: bigint }
  /** anything else numeric, `-0` and integers beyond u64/i64 included (`ParserNumber::F64`) */
  | { k: 'f64'; v: number }
  | { k: 'str'; v: string }
  | { k: 'arr'; v: Node[] }
  /** entries in order, duplicates kept: serde, not the JSON reader, decides what a duplicate means */
  | { k: 'obj'; v: [string, Node][] };

const U64_MAX = (1n << 64n) - 1n;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN_MAGNITUDE = 1n << 63n;

function isJsonWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

class JsonReader {
  private i = 0;
  /** serde_json `remaining_depth` starts at 128 and fails when an array or object takes it to 0. */
  private remainingDepth = 128;
  private readonly s: string;

  constructor(text: string) {
    this.s = text;
  }

  document(): Node {
    const value = this.value();
    this.skipWhitespace();
    if (this.i < this.s.length) throw this.fail('trailing characters');
    return value;
  }

  private fail(what: string): SerdeError {
    return new SerdeError(`${what} at offset ${this.i}`);
  }

  private skipWhitespace(): void {
    while (this.i < this.s.length && isJsonWhitespace(this.s.charCodeAt(this.i))) this.i++;
  }

  private value(): Node {
    this.skipWhitespace();
    if (this.i >= this.s.length) throw this.fail('EOF while parsing a value');
    const c = this.s[this.i];
    switch (c) {
      case '{':
        return this.object();
      case '[':
        return this.array();
      case '"':
        return { k: 'str', v: this.string() };
      case 't':
        return this.literal('true', { k: 'bool', v: true });
      case 'f':
        return this.literal('false', { k: 'bool', v: false });
      case 'n':
        return this.literal('null', { k: 'null' });
      default:
        if (c === '-' || isDigit(this.s.charCodeAt(this.i))) return this.number();
        throw this.fail('expected value');
    }
  }

  private literal(word: string, node: Node): Node {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return node;
    }
    throw this.fail('expected ident');
  }

  private enter(): void {
    this.remainingDepth -= 1;
    if (this.remainingDepth === 0) throw this.fail('recursion limit exceeded');
  }

  private leave(): void {
    this.remainingDepth += 1;
  }

  private array(): Node {
    this.enter();
    this.i++;
    const items: Node[] = [];
    this.skipWhitespace();
    if (this.s[this.i] === ']') {
      this.i++;
    } else {
      for (;;) {
        items.push(this.value());
        this.skipWhitespace();
        const c = this.s[this.i++];
        if (c === ']') break;
        if (c !== ',') throw this.fail('expected `,` or `]`');
        this.skipWhitespace();
        if (this.s[this.i] === ']') throw this.fail('trailing comma');
      }
    }
    this.leave();
    return { k: 'arr', v: items };
  }

  private object(): Node {
    this.enter();
    this.i++;
    const entries: [string, Node][] = [];
    this.skipWhitespace();
    if (this.s[this.i] === '}') {
      this.i++;
    } else {
      for (;;) {
        this.skipWhitespace();
        if (this.s[this.i] === '}') throw this.fail('trailing comma');
        if (this.s[this.i] !== '"') throw this.fail('key must be a string');
        const key = this.string();
        this.skipWhitespace();
        if (this.s[this.i++] !== ':') throw this.fail('expected `:`');
        entries.push([key, this.value()]);
        this.skipWhitespace();
        const c = this.s[this.i++];
        if (c === '}') break;
        if (c !== ',') throw this.fail('expected `,` or `}`');
      }
    }
    this.leave();
    return { k: 'obj', v: entries };
  }

  /** serde_json read.rs `parse_str` with `validate = true`: escaped surrogates must pair up. */
  private string(): string {
    this.i++; // the opening quote
    let out = '';
    let start = this.i;
    for (;;) {
      if (this.i >= this.s.length) throw this.fail('EOF while parsing a string');
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) {
        out += this.s.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c === 0x5c) {
        out += this.s.slice(start, this.i);
        this.i++;
        out += this.escape();
        start = this.i;
        continue;
      }
      if (c < 0x20) throw this.fail('control character (\\u0000-\\u001F) found while parsing a string');
      if (c >= 0xd800 && c <= 0xdfff) {
        // A raw lone surrogate cannot be in a `&str` (nor survive UTF-8 in a text frame).
        const next = this.s.charCodeAt(this.i + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          this.i += 2;
          continue;
        }
        throw this.fail('lone surrogate in the text itself (not valid UTF-8)');
      }
      this.i++;
    }
  }

  private hex4(): number {
    const digits = this.s.slice(this.i, this.i + 4);
    if (digits.length < 4) throw this.fail('EOF while parsing a string');
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) throw this.fail('invalid escape');
    this.i += 4;
    return Number.parseInt(digits, 16);
  }

  private escape(): string {
    const c = this.s[this.i++];
    switch (c) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case '/':
        return '/';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const n = this.hex4();
        if (n >= 0xdc00 && n <= 0xdfff) throw this.fail('lone leading surrogate in hex escape');
        if (n < 0xd800 || n > 0xdbff) return String.fromCharCode(n);
        if (this.s[this.i] !== '\\' || this.s[this.i + 1] !== 'u') {
          throw this.fail('unexpected end of hex escape');
        }
        this.i += 2;
        const n2 = this.hex4();
        if (n2 < 0xdc00 || n2 > 0xdfff) throw this.fail('lone leading surrogate in hex escape');
        return String.fromCharCode(n, n2);
      }
      case undefined:
        throw this.fail('EOF while parsing a string');
      default:
        throw this.fail('invalid escape');
    }
  }

  /** serde_json de.rs `parse_integer` / `parse_number`: the literal's form picks U64, I64 or F64. */
  private number(): Node {
    const start = this.i;
    const negative = this.s[this.i] === '-';
    if (negative) this.i++;
    const first = this.s.charCodeAt(this.i);
    if (first === 0x30) {
      this.i++;
      if (isDigit(this.s.charCodeAt(this.i))) throw this.fail('invalid number');
    } else if (isDigit(first)) {
      while (isDigit(this.s.charCodeAt(this.i))) this.i++;
    } else {
      throw this.fail('invalid number');
    }
    let float = false;
    if (this.s[this.i] === '.') {
      float = true;
      this.i++;
      if (!isDigit(this.s.charCodeAt(this.i))) throw this.fail('invalid number');
      while (isDigit(this.s.charCodeAt(this.i))) this.i++;
    }
    if (this.s[this.i] === 'e' || this.s[this.i] === 'E') {
      float = true;
      this.i++;
      if (this.s[this.i] === '+' || this.s[this.i] === '-') this.i++;
      if (!isDigit(this.s.charCodeAt(this.i))) throw this.fail('invalid number');
      while (isDigit(this.s.charCodeAt(this.i))) this.i++;
    }
    const literal = this.s.slice(start, this.i);
    if (!float) {
      const magnitude = BigInt(negative ? literal.slice(1) : literal);
      if (magnitude <= U64_MAX) {
        if (!negative) return { k: 'u64', v: magnitude };
        // de.rs parse_number: `-0` and magnitudes past i64::MIN become F64.
        if (magnitude !== 0n && magnitude <= I64_MIN_MAGNITUDE) return { k: 'i64', v: -magnitude };
        return { k: 'f64', v: -Number(magnitude) };
      }
      // de.rs parse_long_integer: too long for u64, read as f64 (below).
    }
    const value = Number(literal);
    // de.rs f64_from_parts: a literal that overflows f64 is an error, wherever it is in the frame.
    if (!Number.isFinite(value)) throw this.fail('number out of range');
    return { k: 'f64', v: value };
  }
}

// ---------------------------------------------------------------------------------------------------------
// serde's `ContentDeserializer` (serde/src/private/de.rs) for the types in types.rs.

type De<T> = (node: Node, path: string) => T;

function describe(node: Node): string {
  switch (node.k) {
    case 'null':
      return 'null';
    case 'bool':
      return `boolean \`${node.v}\``;
    case 'u64':
      return `integer \`${node.v}\``;
    case 'i64':
      return `integer \`${node.v}\``;
    case 'f64':
      return `floating point \`${node.v}\``;
    case 'str':
      return `string ${JSON.stringify(node.v)}`;
    case 'arr':
      return 'sequence';
    case 'obj':
      return 'map';
  }
}

function invalidType(node: Node, expected: string, path: string): SerdeError {
  return new SerdeError(`${path}: invalid type: ${describe(node)}, expected ${expected}`);
}

/** `deserialize_float`: any of U64, I64, F64 (integers too); never a string, never null. */
const f64: De<number> = (node, path) => {
  if (node.k === 'u64' || node.k === 'i64') return Number(node.v);
  if (node.k === 'f64') return node.v;
  throw invalidType(node, 'f64', path);
};

/** `deserialize_integer` + i64's visitor: an integer literal in i64 range; a float (even `5.0`, `-0`) fails. */
const i64: De<number> = (node, path) => {
  if (node.k === 'i64') return Number(node.v);
  if (node.k === 'u64') {
    if (node.v > I64_MAX) throw new SerdeError(`${path}: invalid value: integer \`${node.v}\`, expected i64`);
    return Number(node.v);
  }
  throw invalidType(node, 'i64', path);
};

/** `deserialize_string`: a JSON string only. */
const string: De<string> = (node, path) => {
  if (node.k === 'str') return node.v;
  throw invalidType(node, 'a string', path);
};

/**
 * A derived enum of unit variants through `ContentDeserializer::deserialize_enum`: the exact variant name
 * (case-sensitive), or the externally tagged map form `{"Name": null}` / `{"Name": {}}` (one key; the unit
 * payload may be null or an empty map: `deserialize_unit`).
 */
function unitEnum<T extends string>(name: string, variants: readonly T[]): De<T> {
  const known = (variant: string, path: string): T => {
    if (!(variants as readonly string[]).includes(variant)) {
      throw new SerdeError(`${path}: unknown variant \`${variant}\`, expected one of ${variants.join(', ')}`);
    }
    return variant as T;
  };
  return (node, path) => {
    if (node.k === 'str') return known(node.v, path);
    if (node.k !== 'obj') throw invalidType(node, `string or map (enum ${name})`, path);
    if (node.v.length !== 1)
      throw new SerdeError(`${path}: invalid value: map, expected map with a single key`);
    const [key, payload] = node.v[0];
    const variant = known(key, path); // the variant first, then its unit payload
    if (!(payload.k === 'null' || (payload.k === 'obj' && payload.v.length === 0))) {
      throw invalidType(payload, 'unit variant', path);
    }
    return variant;
  };
}

/** `deserialize_seq` for `Vec<T>`: an array; one bad element fails the whole value. */
function vec<T>(item: De<T>): De<T[]> {
  return (node, path) => {
    if (node.k !== 'arr') throw invalidType(node, 'a sequence', path);
    return node.v.map((element, index) => item(element, `${path}[${index}]`));
  };
}

/** `(f64, f64)`: `deserialize_tuple` → a sequence of exactly two numbers. */
const pair: De<[number, number]> = (node, path) => {
  if (node.k !== 'arr') throw invalidType(node, 'a tuple of size 2', path);
  const items = node.v;
  const element = (index: number) => {
    if (index >= items.length)
      throw new SerdeError(`${path}: invalid length ${index}, expected a tuple of size 2`);
    return f64(items[index], `${path}[${index}]`);
  };
  const result: [number, number] = [element(0), element(1)];
  if (items.length > 2)
    throw new SerdeError(`${path}: invalid length ${items.length}, expected 2 elements in sequence`);
  return result;
};

/**
 * A derived struct through `ContentDeserializer::deserialize_struct` (and `deserialize_any` for the enum's
 * struct variants, whose visitor is the same): a map, whose unknown keys are ignored (no
 * `deny_unknown_fields`), a repeated known key fails (`duplicate field`), a missing one fails (none is an
 * `Option`); or a sequence of exactly the fields, in declaration order.
 */
function struct<T>(name: string, fields: [keyof T & string, De<unknown>][]): De<T> {
  const byName = new Map<string, De<unknown>>(fields);
  return (node, path) => {
    const out = new Map<string, unknown>();
    if (node.k === 'arr') {
      // derived `visit_seq`: field by field, then `SeqDeserializer::end` refuses leftovers
      fields.forEach(([field, de], index) => {
        if (index >= node.v.length) {
          throw new SerdeError(
            `${path}: invalid length ${index}, expected struct ${name} with ${fields.length} elements`,
          );
        }
        out.set(field, de(node.v[index], `${path}.${field}`));
      });
      if (node.v.length > fields.length) {
        throw new SerdeError(
          `${path}: invalid length ${node.v.length}, expected ${fields.length} elements in sequence`,
        );
      }
    } else if (node.k === 'obj') {
      for (const [key, value] of node.v) {
        const de = byName.get(key);
        if (de === undefined) continue;
        if (out.has(key)) throw new SerdeError(`${path}: duplicate field \`${key}\``);
        out.set(key, de(value, `${path}.${key}`));
      }
      for (const [field] of fields) {
        if (!out.has(field)) throw new SerdeError(`${path}: missing field \`${field}\``);
      }
    } else {
      throw invalidType(node, `struct ${name}`, path);
    }
    return Object.fromEntries(fields.map(([field]) => [field, out.get(field)])) as T;
  };
}

// ---------------------------------------------------------------------------------------------------------
// chrono 0.4 `impl Deserialize for DateTime<Utc>` (datetime/serde.rs): `deserialize_str`, then
// `str::parse::<DateTime<FixedOffset>>()`, which is `parse_rfc3339_relaxed` (format/parse.rs) followed by
// `Parsed::to_datetime` (format/parsed.rs). Relaxed: `T`, `t` or one space between date and time; any
// whitespace between components; one- or two-digit fields; a fraction of any length (the first nine digits
// count); an offset `Z`/`z`, `UTC` (any case), or `±HH[:]MM` (a colon or spaces or nothing between; the
// minutes are required; `−` U+2212 works as minus). No offset, or a number, fails.

const MIN_YEAR = -262143; // chrono naive/date: (i32::MIN >> 13) + 1
const MAX_YEAR = 262142; // (i32::MAX >> 13) - 1

/** Rust `char::is_whitespace` (Unicode White_Space). */
function isRustWhitespace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    c === 0x20 ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

function trimStart(s: string): string {
  let i = 0;
  while (i < s.length && isRustWhitespace(s.charCodeAt(i))) i++;
  return s.slice(i);
}

class ChronoError extends Error {}

/** The unparsed rest of the string, as chrono's scanners pass it along. */
interface Rest {
  s: string;
}

/** scan.rs `number`: `min..=max` ASCII digits. An i64 overflow is an error (so is anything past i32 later). */
function scanNumber(r: Rest, min: number, max: number): number {
  if (r.s.length < min) throw new ChronoError('premature end of input');
  let n = 0n;
  let i = 0;
  for (; i < Math.min(max, r.s.length); i++) {
    const c = r.s.charCodeAt(i);
    if (!isDigit(c)) {
      if (i < min) throw new ChronoError('input contains invalid characters');
      break;
    }
    n = n * 10n + BigInt(c - 0x30);
    if (n > I64_MAX) throw new ChronoError('input is out of range');
  }
  r.s = r.s.slice(i);
  return Number(n);
}

function literal(r: Rest, prefix: string): void {
  if (r.s.length < prefix.length) throw new ChronoError('premature end of input');
  if (!r.s.startsWith(prefix)) throw new ChronoError('input contains invalid characters');
  r.s = r.s.slice(prefix.length);
}

/** format/parse.rs `parse_internal`, `Item::Space`: any run of whitespace, none included. */
function space(r: Rest): void {
  r.s = trimStart(r.s);
}

function inRange(value: number, low: number, high: number): number {
  if (value < low || value > high) throw new ChronoError('input is out of range');
  return value;
}

/** format/parse.rs `parse_internal`, `Item::Numeric`: trims leading whitespace first; only Year is signed. */
function numeric(r: Rest, width: number, signed = false): number {
  space(r);
  if (signed && (r.s.startsWith('-') || r.s.startsWith('+'))) {
    const negative = r.s.startsWith('-');
    r.s = r.s.slice(1);
    const magnitude = scanNumber(r, 1, Number.POSITIVE_INFINITY);
    return negative ? -magnitude : magnitude;
  }
  return scanNumber(r, 1, width);
}

/** scan.rs `timezone_offset(s, colon_or_space, allow_zulu = true, allow_missing_minutes = false, true)` */
function timezoneOffset(r: Rest): number {
  if (r.s.startsWith('Z') || r.s.startsWith('z')) {
    r.s = r.s.slice(1);
    return 0;
  }
  let negative: boolean;
  if (r.s.startsWith('+')) negative = false;
  else if (r.s.startsWith('-') || r.s.startsWith('\u2212')) negative = true;
  else if (r.s.length === 0) throw new ChronoError('premature end of input');
  else throw new ChronoError('input contains invalid characters');
  r.s = r.s.slice(1);
  // `digits`: two bytes, both ASCII digits (hours 00-99)
  if (Buffer.byteLength(r.s, 'utf8') < 2) throw new ChronoError('premature end of input');
  if (!isDigit(r.s.charCodeAt(0)) || !isDigit(r.s.charCodeAt(1))) {
    throw new ChronoError('input contains invalid characters');
  }
  const hours = Number(r.s.slice(0, 2));
  r.s = r.s.slice(2);
  // scan.rs `colon_or_space`: any run of ':' or whitespace
  let i = 0;
  while (i < r.s.length && (r.s[i] === ':' || isRustWhitespace(r.s.charCodeAt(i)))) i++;
  r.s = r.s.slice(i);
  // minutes 00-59, required
  if (Buffer.byteLength(r.s, 'utf8') < 2) throw new ChronoError('premature end of input');
  const m1 = r.s.charCodeAt(0);
  const m2 = r.s.charCodeAt(1);
  if (m1 >= 0x36 && m1 <= 0x39 && isDigit(m2)) throw new ChronoError('input is out of range');
  if (!(m1 >= 0x30 && m1 <= 0x35 && isDigit(m2))) throw new ChronoError('input contains invalid characters');
  const minutes = Number(r.s.slice(0, 2));
  r.s = r.s.slice(2);
  const seconds = hours * 3600 + minutes * 60;
  return negative ? -seconds : seconds;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's `days_from_civil`). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const MIN_SECONDS = daysFromCivil(MIN_YEAR, 1, 1) * 86400;
const MAX_SECONDS = daysFromCivil(MAX_YEAR, 12, 31) * 86400 + 86399;

/** `text.parse::<DateTime<FixedOffset>>()` then `.with_timezone(&Utc)`; throws a ChronoError if chrono fails. */
export function parseChronoDateTime(text: string): DateTimeUtc {
  const r: Rest = { s: text };
  // DATE_ITEMS: Year (4 digits, or a sign and any number), Space, "-", Month, Space, "-", Day
  const year = numeric(r, 4, true);
  if (year < -2147483648 || year > 2147483647) throw new ChronoError('input is out of range'); // set_year: i32
  space(r);
  literal(r, '-');
  const month = inRange(numeric(r, 2), 1, 12);
  space(r);
  literal(r, '-');
  const day = inRange(numeric(r, 2), 1, 31);
  // exactly one 'T', 't' or ' ' between date and time
  if (r.s.length === 0) throw new ChronoError('premature end of input');
  if (r.s[0] !== 'T' && r.s[0] !== 't' && r.s[0] !== ' ') {
    throw new ChronoError('input contains invalid characters');
  }
  r.s = r.s.slice(1);
  // TIME_ITEMS: Hour, Space, ":", Minute, Space, ":", Second, Nanosecond, Space
  const hour = inRange(numeric(r, 2), 0, 23);
  space(r);
  literal(r, ':');
  const minute = inRange(numeric(r, 2), 0, 59);
  space(r);
  literal(r, ':');
  let second = inRange(numeric(r, 2), 0, 60);
  let nanosecond = 0;
  if (r.s.startsWith('.')) {
    // Fixed::Nanosecond → scan.rs `nanosecond`: 1..=9 digits scaled, further digits skipped
    r.s = r.s.slice(1);
    const before = r.s.length;
    const digits = scanNumber(r, 1, 9);
    nanosecond = digits * 10 ** (9 - (before - r.s.length));
    r.s = r.s.replace(/^[0-9]+/, '');
  }
  space(r);
  // the offset: "UTC" in any ASCII case, or timezone_offset
  let offset: number;
  if (r.s.length >= 3 && r.s.slice(0, 3).replace(/[A-Z]/g, (c) => c.toLowerCase()) === 'utc') {
    r.s = r.s.slice(3);
    offset = 0;
  } else {
    offset = timezoneOffset(r);
  }
  // FromStr: only whitespace may follow
  if (trimStart(r.s).length > 0) throw new ChronoError('trailing input');
  // Parsed::to_datetime: a real date in NaiveDate's range, a leap second kept as nanosecond >= 1e9, an
  // offset under a day, and the UTC instant in range too (checked_sub_offset)
  if (year < MIN_YEAR || year > MAX_YEAR) throw new ChronoError('input is out of range');
  const monthDays = month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1];
  if (day > monthDays) throw new ChronoError('input is out of range');
  if (second === 60) {
    second = 59;
    nanosecond += 1_000_000_000;
  }
  if (offset <= -86400 || offset >= 86400) throw new ChronoError('input is out of range');
  const epochSeconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
  if (epochSeconds < MIN_SECONDS || epochSeconds > MAX_SECONDS)
    throw new ChronoError('input is out of range');
  return {
    epochSeconds,
    nanosecond,
    epochMillis: epochSeconds * 1000 + Math.floor(nanosecond / 1_000_000),
    text,
  };
}

const dateTime: De<DateTimeUtc> = (node, path) => {
  if (node.k !== 'str') throw invalidType(node, 'an RFC 3339 formatted date and time string', path);
  try {
    return parseChronoDateTime(node.v);
  } catch (error) {
    if (error instanceof ChronoError) throw new SerdeError(`${path}: ${error.message}`);
    throw error;
  }
};

// ---------------------------------------------------------------------------------------------------------
// types.rs and websocket.rs, as serde derives them.

const positionSide = unitEnum<PositionSide>('PositionSide', ['Long', 'Short']);
const orderSide = unitEnum<OrderSide>('OrderSide', ['Buy', 'Sell']);
const orderType = unitEnum<OrderType>('OrderType', ['Limit', 'Market', 'StopLimit', 'StopMarket']);
const orderStatus = unitEnum<OrderStatus>('OrderStatus', [
  'New',
  'PartiallyFilled',
  'Filled',
  'Canceled',
  'Rejected',
]);
const signalType = unitEnum<SignalType>('SignalType', ['Long', 'Short', 'Neutral']);
const alertLevel = unitEnum<AlertLevel>('AlertLevel', ['Info', 'Warning', 'Error']);

// Field order matters for the sequence form: it is the declaration order in types.rs.
const position = struct<Position>('Position', [
  ['symbol', string],
  ['size', f64],
  ['entry_price', f64],
  ['current_price', f64],
  ['side', positionSide],
  ['unrealized_pnl', f64],
  ['pnl_percent', f64],
]);
const order = struct<Order>('Order', [
  ['id', string],
  ['symbol', string],
  ['side', orderSide],
  ['order_type', orderType],
  ['price', f64],
  ['size', f64],
  ['filled_size', f64],
  ['status', orderStatus],
  ['timestamp', dateTime],
]);
const orderBook = struct<OrderBook>('OrderBook', [
  ['symbol', string],
  ['bids', vec(pair)],
  ['asks', vec(pair)],
  ['timestamp', dateTime],
]);
const fill = struct<Fill>('Fill', [
  ['id', string],
  ['order_id', string],
  ['symbol', string],
  ['side', orderSide],
  ['price', f64],
  ['size', f64],
  ['fee', f64],
  ['pnl', f64],
  ['timestamp', dateTime],
]);
const signal = struct<Signal>('Signal', [
  ['id', string],
  ['strategy', string],
  ['symbol', string],
  ['signal_type', signalType],
  ['strength', f64],
  ['target_price', f64],
  ['timestamp', dateTime],
]);
const alert = struct<Alert>('Alert', [
  ['id', string],
  ['level', alertLevel],
  ['message', string],
  ['timestamp', dateTime],
]);

/** websocket.rs:13-34: each variant is a struct variant with one field. */
const VARIANTS = new Map<string, [string, De<unknown>]>([
  ['positions', ['data', vec(position)]],
  ['orders', ['data', vec(order)]],
  ['orderbook', ['data', orderBook]],
  ['fills', ['data', vec(fill)]],
  ['signals', ['data', vec(signal)]],
  ['alerts', ['data', vec(alert)]],
  ['ping', ['timestamp', i64]],
]);
const VARIANT_NAMES = [...VARIANTS.keys()].join(', ');

function variantOf(node: Node): string {
  // the tag goes through serde_json's deserialize_identifier = deserialize_str: a JSON string only
  if (node.k !== 'str') throw invalidType(node, 'variant identifier', 'type');
  if (!VARIANTS.has(node.v)) {
    throw new SerdeError(`unknown variant \`${node.v}\`, expected one of ${VARIANT_NAMES}`);
  }
  return node.v;
}

/**
 * serde's `TaggedContentVisitor`: a map with one `type` key (a second one is `duplicate field`), the
 * other keys buffered for the variant; or a sequence whose first element is the tag.
 */
function dashboardMessage(root: Node): DashboardMessage {
  let tag: string | undefined;
  let content: Node;
  if (root.k === 'obj') {
    const rest: [string, Node][] = [];
    for (const [key, value] of root.v) {
      if (key === 'type') {
        if (tag !== undefined) throw new SerdeError('duplicate field `type`');
        tag = variantOf(value);
      } else {
        rest.push([key, value]);
      }
    }
    if (tag === undefined) throw new SerdeError('missing field `type`');
    content = { k: 'obj', v: rest };
  } else if (root.k === 'arr') {
    if (root.v.length === 0) throw new SerdeError('missing field `type`');
    tag = variantOf(root.v[0]);
    content = { k: 'arr', v: root.v.slice(1) };
  } else {
    throw invalidType(root, 'internally tagged enum DashboardMessage', '$');
  }
  const [field, de] = VARIANTS.get(tag)!;
  const body = struct<Record<string, unknown>>(`variant DashboardMessage::${tag}`, [[field, de]])(
    content,
    tag,
  );
  return { type: tag, [field]: body[field] } as DashboardMessage;
}

/** What `serde_json::from_str::<DashboardMessage>(&text)` (websocket.rs:136) does with a text frame. */
export function parseDashboardMessage(text: string): ParseResult {
  try {
    return { ok: true, message: dashboardMessage(new JsonReader(text).document()) };
  } catch (error) {
    if (error instanceof SerdeError) return { ok: false, error: error.message };
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------------------
// state.rs `AppState::apply_update`, fed as websocket.rs `handle_message` feeds it.

export interface TuiCaps {
  maxFills: number;
  maxSignals: number;
  maxAlerts: number;
}

/** What the terminal UI keeps from the frames it is sent. */
export class TuiModel {
  /** state.rs:77-83: replaced whole by each `positions` frame. */
  positions: Position[] = [];
  /** state.rs:84-90: replaced whole by each `orders` frame. */
  orders: Order[] = [];
  /** state.rs:91-95: ONE book, whichever symbol came last (ui/orderbook.rs shows its `symbol`). */
  orderbook: OrderBook | null = null;
  /** state.rs:96-105: each frame's fills pushed to the front one by one (so a frame's last comes first). */
  fills: Fill[] = [];
  /** state.rs:106-115 */
  signals: Signal[] = [];
  /** state.rs:116-125 */
  alerts: Alert[] = [];
  /** Frames serde rejected: the client logs them and drops them (websocket.rs:149-152). */
  readonly rejected: string[] = [];
  /** The serde error for each rejected frame, same order. */
  readonly errors: string[] = [];
  /** `ping` timestamps received: websocket.rs:181-185 only traces them; nothing answers. */
  readonly pings: number[] = [];
  /** Frames that parsed, by `type`. */
  readonly accepted: Record<DashboardMessage['type'], number> = {
    positions: 0,
    orders: 0,
    orderbook: 0,
    fills: 0,
    signals: 0,
    alerts: 0,
    ping: 0,
  };
  readonly caps: TuiCaps;

  constructor(caps: Partial<TuiCaps> = {}) {
    this.caps = { ...TUI_DEFAULT_CAPS, ...caps };
  }

  /** One text frame, as websocket.rs:133-153 handles it. */
  receive(text: string): ParseResult {
    const result = parseDashboardMessage(text);
    if (result.ok) {
      this.apply(result.message);
    } else {
      this.rejected.push(text);
      this.errors.push(result.error);
    }
    return result;
  }

  apply(message: DashboardMessage): void {
    this.accepted[message.type] += 1;
    switch (message.type) {
      case 'positions':
        this.positions = message.data;
        break;
      case 'orders':
        this.orders = message.data;
        break;
      case 'orderbook':
        this.orderbook = message.data;
        break;
      case 'fills':
        pushFront(this.fills, message.data, this.caps.maxFills);
        break;
      case 'signals':
        pushFront(this.signals, message.data, this.caps.maxSignals);
        break;
      case 'alerts':
        pushFront(this.alerts, message.data, this.caps.maxAlerts);
        break;
      case 'ping':
        this.pings.push(message.timestamp);
        break;
    }
  }
}

/** `VecDeque::push_front` for each item, then `pop_back` down to the cap. */
function pushFront<T>(list: T[], items: T[], cap: number): void {
  for (const item of items) list.unshift(item);
  if (list.length > cap) list.length = cap;
}
