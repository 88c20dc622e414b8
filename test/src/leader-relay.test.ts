import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type DataEnvelope,
  type Envelope,
  MAX_ENVELOPE_BYTES,
  parseEnvelope,
  RelayError,
  RelayOrder,
  RelaySequence,
  type StatusEnvelope,
} from '../../src/leader/relay.ts';

/**
 * The relay's pure parts (src/leader/relay.ts): what a replica accepts from `<leader.key>:polls` (anyone who can
 * publish on the Redis can write there), how the leader numbers its envelopes, and in what order a replica that
 * does not lead applies them.
 */

const STATUS = {
  status: 'degraded',
  breaker: 'closed',
  last_success: '2024-01-01T00:00:00.000Z',
  last_error: 'HTTP 500',
  stale_since: '2024-01-01T00:00:01.000Z',
};

function dataEnvelope(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    term: 3,
    seq: 7,
    holder: 'host-a:123:abcdef',
    source: 'account_monitor',
    kind: 'data',
    started_at: 1_700_000_000_000,
    answers: [{ pnl: {}, balances: {}, positions: {} }],
    ...fields,
  };
}

function statusEnvelope(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    term: 3,
    seq: 8,
    holder: 'host-a:123:abcdef',
    source: 'order_execution',
    kind: 'status',
    status: STATUS,
    ...fields,
  };
}

/** parseEnvelope must refuse `payload` with a RelayError (not a TypeError or a SyntaxError from inside). */
function rejects(payload: string | Buffer, pattern: RegExp, what: string): void {
  assert.throws(
    () => parseEnvelope(payload),
    (error: unknown) => {
      assert.ok(error instanceof RelayError, `${what}: a RelayError, got ${String(error)}`);
      assert.match(error.message, pattern, what);
      return true;
    },
    what,
  );
}

const text = (value: unknown) => JSON.stringify(value);

/** What plugins/leader.ts does with an envelope: asks the order, and records it once applied (as if it succeeded). */
function accept(order: RelayOrder, envelope: Envelope, options?: Parameters<RelayOrder['accept']>[1]) {
  const verdict = order.accept(envelope, options);
  if (verdict.apply) order.markApplied(envelope);
  return verdict;
}

describe('parseEnvelope accepts', () => {
  test('a data envelope, from a string or a Buffer, with exactly its fields', () => {
    const envelope = dataEnvelope({ extra: 'dropped' });
    for (const payload of [text(envelope), Buffer.from(text(envelope))]) {
      const parsed = parseEnvelope(payload);
      assert.deepEqual(parsed, {
        v: 1,
        term: 3,
        seq: 7,
        holder: 'host-a:123:abcdef',
        source: 'account_monitor',
        kind: 'data',
        started_at: 1_700_000_000_000,
        answers: [{ pnl: {}, balances: {}, positions: {} }],
      });
    }
  });

  test('a data envelope with the most answers a poll makes (4)', () => {
    const parsed = parseEnvelope(text(dataEnvelope({ answers: [1, 'two', null, { four: 4 }] })));
    assert.equal((parsed as DataEnvelope).answers.length, 4);
  });

  test('a status envelope: only the known status fields, absent optional ones as null, in a new object', () => {
    const parsed = parseEnvelope(
      text(statusEnvelope({ status: { ...STATUS, secret: 'x' } })),
    ) as StatusEnvelope;
    assert.equal(parsed.kind, 'status');
    assert.equal(parsed.source, 'order_execution');
    assert.deepEqual(parsed.status, STATUS, 'unknown status fields are left out');

    const minimal = parseEnvelope(
      text(statusEnvelope({ status: { status: 'down', breaker: 'open', last_error: null } })),
    ) as StatusEnvelope;
    assert.deepEqual(minimal.status, {
      status: 'down',
      breaker: 'open',
      last_success: null,
      last_error: null,
      stale_since: null,
    });
    for (const health of ['ok', 'degraded', 'down'])
      for (const breaker of ['closed', 'open', 'half_open'])
        assert.doesNotThrow(() =>
          parseEnvelope(text(statusEnvelope({ status: { status: health, breaker } }))),
        );
  });

  test('an envelope of exactly MAX_ENVELOPE_BYTES (padded with whitespace)', () => {
    const body = Buffer.from(text(dataEnvelope()));
    const payload = Buffer.alloc(MAX_ENVELOPE_BYTES, 0x20);
    body.copy(payload);
    assert.equal(parseEnvelope(payload).seq, 7);
  });
});

describe('parseEnvelope rejects with a RelayError', () => {
  test('what is not JSON, or not a JSON object', () => {
    rejects('not json', /not JSON/, 'garbage');
    rejects('', /not JSON/, 'empty');
    rejects(Buffer.from([0xff, 0xfe, 0x00]), /not JSON/, 'binary');
    rejects(`${text(dataEnvelope())} trailing`, /not JSON/, 'an envelope followed by garbage');
    rejects(text([dataEnvelope()]), /not an object/, 'an array holding an envelope');
    rejects('[]', /not an object/, 'an empty array');
    rejects('null', /not an object/, 'null');
    rejects('42', /not an object/, 'a number');
    rejects('"envelope"', /not an object/, 'a string');
  });

  test('another version', () => {
    rejects(text(dataEnvelope({ v: 2 })), /version/, 'v 2');
    rejects(text(dataEnvelope({ v: '1' })), /version/, "v '1'");
    rejects(text(dataEnvelope({ v: undefined })), /version/, 'no v');
  });

  test('a term or seq that is not a positive safe integer', () => {
    for (const bad of [0, -1, 1.5, 'NaN', '1', null, true, 2 ** 53, 1e300, [1], { n: 1 }]) {
      rejects(text(dataEnvelope({ seq: bad })), /term or seq/, `seq ${text(bad)}`);
      rejects(text(statusEnvelope({ term: bad })), /term or seq/, `term ${text(bad)}`);
    }
    rejects(text(dataEnvelope({ seq: undefined })), /term or seq/, 'no seq');
  });

  test('a holder that is empty, too long or not a string', () => {
    rejects(text(dataEnvelope({ holder: '' })), /holder/, 'empty holder');
    rejects(text(dataEnvelope({ holder: 'h'.repeat(10 * 1024) })), /holder/, 'a 10 KB holder');
    rejects(text(dataEnvelope({ holder: 'h'.repeat(257) })), /holder/, 'a holder of 257 characters');
    rejects(text(dataEnvelope({ holder: 42 })), /holder/, 'a number');
    rejects(text(dataEnvelope({ holder: undefined })), /holder/, 'no holder');
    assert.equal(parseEnvelope(text(dataEnvelope({ holder: 'h'.repeat(256) }))).holder.length, 256);
  });

  test('a source that is not a backend, prototype names included', () => {
    for (const source of [
      'redis',
      '',
      '__proto__',
      'constructor',
      'toString',
      'hasOwnProperty',
      'ACCOUNT_MONITOR',
      42,
      ['account_monitor'],
    ])
      rejects(text(dataEnvelope({ source })), /source/, `source ${text(source)}`);
  });

  test('a kind that is neither data nor status', () => {
    for (const kind of ['Data', 'command', '', null, 1])
      rejects(text(dataEnvelope({ kind })), /kind/, `kind ${text(kind)}`);
    rejects(text(dataEnvelope({ kind: undefined })), /kind/, 'no kind');
  });

  test('a data envelope whose answers are not a list of 1 to 4, or without a start time', () => {
    rejects(text(dataEnvelope({ answers: [] })), /answers/, 'no answers');
    rejects(text(dataEnvelope({ answers: [1, 2, 3, 4, 5] })), /answers/, '5 answers');
    rejects(text(dataEnvelope({ answers: { 0: 'a', length: 1 } })), /answers/, 'an array-like object');
    rejects(text(dataEnvelope({ answers: 'abc' })), /answers/, 'a string');
    for (const startedAt of [0, -1, 1.5, '1700000000000', null])
      rejects(text(dataEnvelope({ started_at: startedAt })), /started_at/, `started_at ${text(startedAt)}`);
  });

  test('a status that is malformed, of an unknown health or breaker state, or with huge or odd texts', () => {
    rejects(text(statusEnvelope({ status: 'ok' })), /status is not an object/, 'a string status');
    rejects(text(statusEnvelope({ status: [STATUS] })), /status is not an object/, 'an array');
    rejects(text(statusEnvelope({ status: null })), /status is not an object/, 'null');
    rejects(text(statusEnvelope({ status: { ...STATUS, status: 'fine' } })), /health/, 'unknown health');
    rejects(text(statusEnvelope({ status: { ...STATUS, status: 'constructor' } })), /health/, 'constructor');
    rejects(text(statusEnvelope({ status: { ...STATUS, breaker: 'halfOpen' } })), /breaker/, 'breaker');
    rejects(
      text(statusEnvelope({ status: { ...STATUS, last_error: 'e'.repeat(1024 * 1024) } })),
      /last_error/,
      'a 1 MB last_error',
    );
    rejects(text(statusEnvelope({ status: { ...STATUS, last_success: 17 } })), /last_success/, 'a number');
    rejects(text(statusEnvelope({ status: { ...STATUS, stale_since: { at: 1 } } })), /stale_since/, 'object');
  });

  test('an envelope over MAX_ENVELOPE_BYTES, before reading it', () => {
    // Zero bytes: not JSON either; the size is what must be reported.
    rejects(Buffer.alloc(MAX_ENVELOPE_BYTES + 1), /over/, 'a Buffer of MAX + 1 bytes');
    const padded = Buffer.alloc(MAX_ENVELOPE_BYTES + 1, 0x20);
    Buffer.from(text(dataEnvelope())).copy(padded);
    rejects(padded, /over/, 'a valid envelope padded to MAX + 1 bytes');
  });
});

describe('parseEnvelope and prototype pollution', () => {
  test('a top-level or nested "__proto__" neither pollutes Object.prototype nor sets the prototype', () => {
    const hostile =
      '{"__proto__": {"polluted": "yes", "v": 1, "term": 1, "seq": 1, "holder": "h", "source": "account_monitor"},' +
      ' "constructor": {"prototype": {"polluted": "yes"}}';
    // Everything an envelope needs comes from the `__proto__` key only: refused (nothing is read through it).
    rejects(`${hostile}}`, /version/, 'an envelope whose fields are all under __proto__');

    const valid = text(dataEnvelope({ answers: [{ orders: [{ __proto__x: 1 }] }] }))
      .replace('{', '{"__proto__": {"polluted": "yes"}, ')
      .replace('"answers":[{', '"answers":[{"__proto__": {"polluted": "yes"}, ');
    const parsed = parseEnvelope(valid) as DataEnvelope;
    assert.equal(parsed.seq, 7);
    assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
    assert.equal(Object.hasOwn(parsed, '__proto__'), false, 'unknown top-level keys are not carried');
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');
    assert.equal((parsed as unknown as Record<string, unknown>).polluted, undefined);
    // The answers go as they are to the source's parser (which checks them); their prototype is still Object's.
    const answer = parsed.answers[0] as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(answer), Object.prototype);
    assert.equal(answer.polluted, undefined);
  });

  test('a status whose fields hide under "__proto__" is refused, not read through the prototype', () => {
    const payload = text(statusEnvelope({ status: {} })).replace(
      '"status":{}',
      '"status":{"__proto__":{"status":"ok","breaker":"closed"}}',
    );
    rejects(payload, /health/, 'status fields under __proto__');
    assert.equal(({} as Record<string, unknown>).status, undefined);
  });
});

describe('RelaySequence', () => {
  test('numbers from 1 within a term and starts again at 1 with each new term', () => {
    const sequence = new RelaySequence();
    assert.deepEqual(sequence.next(1), { term: 1, seq: 1 });
    assert.deepEqual(sequence.next(1), { term: 1, seq: 2 });
    assert.deepEqual(sequence.next(1), { term: 1, seq: 3 });
    assert.deepEqual(sequence.next(4), { term: 4, seq: 1 });
    assert.deepEqual(sequence.next(4), { term: 4, seq: 2 });
    assert.deepEqual(sequence.next(5), { term: 5, seq: 1 });
  });

  test('one counter for every kind and source of a term (the receivers detect gaps on it)', () => {
    const sequence = new RelaySequence();
    const seqs = Array.from({ length: 100 }, () => sequence.next(2).seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
  });
});

/** A parsed envelope of `kind` and `source` numbered (term, seq). */
function envelope(
  term: number,
  seq: number,
  kind: 'data' | 'status' = 'data',
  source = 'account_monitor',
): Envelope {
  const raw = kind === 'data' ? dataEnvelope({ term, seq, source }) : statusEnvelope({ term, seq, source });
  return parseEnvelope(text(raw));
}

describe('RelayOrder', () => {
  test('applies a stream in order without a gap, whatever the kinds and sources', () => {
    const order = new RelayOrder();
    assert.deepEqual(accept(order, envelope(1, 1, 'data')), { apply: true, gap: false });
    assert.deepEqual(accept(order, envelope(1, 2, 'status')), { apply: true, gap: false });
    assert.deepEqual(accept(order, envelope(1, 3, 'data', 'order_execution')), { apply: true, gap: false });
    assert.deepEqual(accept(order, envelope(1, 4, 'data')), { apply: true, gap: false });
  });

  test('does not apply a duplicate or an older envelope of a field, and a late one is no gap', () => {
    const order = new RelayOrder();
    accept(order, envelope(1, 1, 'data'));
    accept(order, envelope(1, 2, 'data'));
    accept(order, envelope(1, 3, 'status'));
    assert.equal(accept(order, envelope(1, 3, 'status')).apply, false, 'the same envelope twice');
    assert.equal(accept(order, envelope(1, 2, 'data')).apply, false, 'a duplicate of an older one');
    assert.equal(accept(order, envelope(1, 1, 'data')).apply, false, 'older than the one applied');
    // Not missing anything: nothing to read from the copies (a resync would be for nothing).
    assert.equal(accept(order, envelope(1, 2, 'data')).gap, false, 'a late duplicate is not a gap');
    assert.deepEqual(
      accept(order, envelope(1, 4, 'data')),
      { apply: true, gap: false },
      'the stream goes on',
    );
  });

  test('an older number of another field is applied: the order is per kind and source', () => {
    const order = new RelayOrder();
    accept(order, envelope(1, 1, 'data', 'account_monitor'));
    accept(order, envelope(1, 2, 'data', 'account_monitor'));
    // A copy of order_execution numbered before the last one applied: the newest of its own field.
    assert.equal(accept(order, envelope(1, 1, 'data', 'order_execution'), { fromCopy: true }).apply, true);
    assert.equal(accept(order, envelope(1, 1, 'status', 'account_monitor'), { fromCopy: true }).apply, true);
  });

  test('reports a gap when a number of the term is missing, and still applies the envelope', () => {
    const order = new RelayOrder();
    assert.deepEqual(accept(order, envelope(1, 1)), { apply: true, gap: false });
    assert.deepEqual(accept(order, envelope(1, 3)), { apply: true, gap: true });
    assert.deepEqual(accept(order, envelope(1, 4)), { apply: true, gap: false }, 'no gap once caught up');
    assert.deepEqual(accept(order, envelope(1, 10, 'status')), { apply: true, gap: true });
  });

  test('reports a gap when a new term does not start at 1, none when it does', () => {
    const order = new RelayOrder();
    accept(order, envelope(1, 1));
    accept(order, envelope(1, 2));
    assert.deepEqual(
      accept(order, envelope(2, 1)),
      { apply: true, gap: false },
      'a takeover seen from its start',
    );
    assert.deepEqual(
      accept(order, envelope(3, 4)),
      { apply: true, gap: true },
      'three envelopes of term 3 missed',
    );
    assert.deepEqual(accept(order, envelope(3, 5)), { apply: true, gap: false });
  });

  test('a replica that joins in the middle of a term reports a gap (it reads the copies)', () => {
    assert.deepEqual(accept(new RelayOrder(), envelope(4, 17)), { apply: true, gap: true });
    assert.deepEqual(accept(new RelayOrder(), envelope(4, 1)), { apply: true, gap: false });
  });

  test("drops a deposed leader's live envelope, but applies its copy when newest of its field", () => {
    const order = new RelayOrder();
    accept(order, envelope(1, 1, 'data'));
    accept(order, envelope(1, 2, 'status'));
    accept(order, envelope(2, 1, 'data')); // a takeover: term 2 relays account data only so far
    // The deposed leader (term 1) still publishing: dropped, and no gap (its numbers are not this term's).
    assert.deepEqual(accept(order, envelope(1, 3, 'status')), { apply: false, gap: false });
    assert.deepEqual(accept(order, envelope(1, 4, 'data')), { apply: false, gap: false });
    // From the copies: term 1's status is still the newest status seen, term 1's data is not the newest data.
    assert.deepEqual(accept(order, envelope(1, 3, 'status'), { fromCopy: true }), {
      apply: true,
      gap: false,
    });
    assert.deepEqual(accept(order, envelope(1, 4, 'data'), { fromCopy: true }), { apply: false, gap: false });
    // The copy did not move the stream back: term 2 goes on without a gap.
    assert.deepEqual(accept(order, envelope(2, 2, 'status')), { apply: true, gap: false });
    assert.equal(
      accept(order, envelope(1, 5, 'status'), { fromCopy: true }).apply,
      false,
      'older than term 2',
    );
  });

  test('an envelope not recorded as applied (its apply failed) does not hold its field back', () => {
    const order = new RelayOrder();
    assert.equal(order.accept(envelope(1, 1, 'data')).apply, true);
    // Not marked: the receiver threw. The same field's next envelope, and a copy of this one, still apply.
    assert.equal(order.accept(envelope(1, 1, 'data'), { fromCopy: true }).apply, true);
    assert.equal(accept(order, envelope(1, 2, 'data')).apply, true);
    assert.equal(order.accept(envelope(1, 2, 'data'), { fromCopy: true }).apply, false);
  });

  test("a lower term from the lease's current holder starts the order again (Redis lost the count of terms)", () => {
    const order = new RelayOrder();
    accept(order, envelope(2, 1, 'data'));
    accept(order, envelope(2, 2, 'status'));
    const restarted = { ...envelope(1, 1, 'data'), holder: 'new-leader' };
    // From a replica that does not hold the lease: a deposed leader's.
    assert.deepEqual(accept(order, restarted, { holder: 'someone-else' }), { apply: false, gap: false });
    // From the holder: applied, and the stream goes on from its numbers.
    assert.deepEqual(accept(order, restarted, { holder: 'new-leader' }), { apply: true, gap: false });
    const next = { ...envelope(1, 2, 'status'), holder: 'new-leader' };
    assert.deepEqual(accept(order, next, { holder: 'new-leader' }), { apply: true, gap: false });
  });

  test('copies never report a gap and may bring the replica ahead of the stream', () => {
    const order = new RelayOrder();
    assert.deepEqual(accept(order, envelope(5, 9, 'data'), { fromCopy: true }), { apply: true, gap: false });
    assert.deepEqual(
      accept(order, envelope(5, 10, 'status')),
      { apply: true, gap: false },
      'the next live one',
    );
    assert.equal(accept(order, envelope(5, 9, 'data')).apply, false, 'the live twin of the copy applied');
  });
});
