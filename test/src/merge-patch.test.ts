import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  applyMergePatch,
  deepEqual,
  isPlainObject,
  type Json,
  type JsonObject,
  mergeDiff,
  UNCHANGED,
} from '../../src/merge-patch.ts';

describe('applyMergePatch: RFC 7396 examples', () => {
  // Appendix A of RFC 7396: [original, patch, result].
  const examples: [Json, Json, Json][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [
      ['a', 'b'],
      ['c', 'd'],
      ['c', 'd'],
    ],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [index, [original, patch, result]] of examples.entries()) {
    test(`example ${index + 1}: ${JSON.stringify(original)} + ${JSON.stringify(patch)}`, () => {
      assert.deepEqual(applyMergePatch(structuredClone(original), structuredClone(patch)), result);
    });
  }

  test('the example of section 3', () => {
    const target = {
      title: 'Goodbye!',
      author: { givenName: 'John', familyName: 'Doe' },
      tags: ['example', 'sample'],
      content: 'This will be unchanged',
    };
    const patch = {
      title: 'Hello!',
      phoneNumber: '+01-123-456-7890',
      author: { familyName: null },
      tags: ['example'],
    };
    assert.deepEqual(applyMergePatch(target, patch), {
      title: 'Hello!',
      author: { givenName: 'John' },
      tags: ['example'],
      content: 'This will be unchanged',
      phoneNumber: '+01-123-456-7890',
    });
  });

  test('modifies target objects in place', () => {
    const target: JsonObject = { a: { b: 1 } };
    const inner = target.a;
    const result = applyMergePatch(target, { a: { c: 2 } });
    assert.equal(result, target);
    assert.equal((result as JsonObject).a, inner);
    assert.deepEqual(inner, { b: 1, c: 2 });
  });

  test('an undefined target is treated as an empty object', () => {
    assert.deepEqual(applyMergePatch(undefined, { a: 1, b: null }), { a: 1 });
    assert.equal(applyMergePatch(undefined, 5), 5);
  });
});

describe('mergeDiff', () => {
  test('a changed scalar field', () => {
    assert.deepEqual(mergeDiff({ a: 1, b: 2 }, { a: 1, b: 3 }), { b: 3 });
  });

  test('an added field', () => {
    assert.deepEqual(mergeDiff({ a: 1 }, { a: 1, b: { c: 2 } }), { b: { c: 2 } });
  });

  test('removed keys become null', () => {
    assert.deepEqual(mergeDiff({ a: 1, b: 2, c: { d: 1 } }, { a: 1 }), { b: null, c: null });
  });

  test('nested objects give nested patches', () => {
    assert.deepEqual(mergeDiff({ a: { b: { c: 1, d: 2 }, e: 3 } }, { a: { b: { c: 1, d: 5 }, e: 3 } }), {
      a: { b: { d: 5 } },
    });
    assert.deepEqual(mergeDiff({ a: { b: 1 } }, { a: {} }), { a: { b: null } });
  });

  test('arrays are replaced whole', () => {
    assert.deepEqual(mergeDiff({ a: [1, 2, 3] }, { a: [1, 2, 4] }), { a: [1, 2, 4] });
    assert.deepEqual(mergeDiff({ a: [{ x: 1 }] }, { a: [{ x: 1 }, { y: 2 }] }), { a: [{ x: 1 }, { y: 2 }] });
    assert.deepEqual(mergeDiff([1], [2]), [2]);
    assert.equal(mergeDiff({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }), UNCHANGED);
  });

  test('a change of kind (object, array, scalar) replaces the value', () => {
    assert.deepEqual(mergeDiff({ a: { b: 1 } }, { a: [1] }), { a: [1] });
    assert.deepEqual(mergeDiff({ a: [1] }, { a: { b: 1 } }), { a: { b: 1 } });
    assert.deepEqual(mergeDiff({ a: 1 }, { a: { b: 1 } }), { a: { b: 1 } });
    assert.deepEqual(mergeDiff({ a: { b: 1 } }, { a: 'x' }), { a: 'x' });
    assert.deepEqual(mergeDiff(5, { a: 1 }), { a: 1 });
  });

  test('equal values give UNCHANGED', () => {
    assert.equal(mergeDiff({}, {}), UNCHANGED);
    assert.equal(mergeDiff({ a: 1, b: { c: [1, 'x'] } }, { b: { c: [1, 'x'] }, a: 1 }), UNCHANGED);
    assert.equal(mergeDiff(1, 1), UNCHANGED);
    assert.equal(mergeDiff('x', 'x'), UNCHANGED);
    assert.equal(mergeDiff([1, [2]], [1, [2]]), UNCHANGED);
    assert.equal(mergeDiff(undefined, undefined), UNCHANGED);
  });

  test('absent before gives the whole value; absent after gives null', () => {
    assert.deepEqual(mergeDiff(undefined, { a: 1 }), { a: 1 });
    assert.deepEqual(mergeDiff(undefined, {}), {});
    assert.equal(mergeDiff(undefined, 3), 3);
    assert.equal(mergeDiff({ a: 1 }, undefined), null);
    assert.equal(mergeDiff(0, undefined), null);
  });

  test('does not modify its inputs', () => {
    const before = { a: { b: 1 }, c: 2 };
    const after = { a: { b: 2 }, d: 3 };
    mergeDiff(before, after);
    assert.deepEqual(before, { a: { b: 1 }, c: 2 });
    assert.deepEqual(after, { a: { b: 2 }, d: 3 });
  });
});

describe('deepEqual', () => {
  test('scalars', () => {
    assert.equal(deepEqual(1, 1), true);
    assert.equal(deepEqual(1, 2), false);
    assert.equal(deepEqual('a', 'a'), true);
    assert.equal(deepEqual(1, '1'), false);
    assert.equal(deepEqual(null, null), true);
    assert.equal(deepEqual(null, {}), false);
    assert.equal(deepEqual({}, null), false);
    assert.equal(deepEqual(true, false), false);
    assert.equal(deepEqual(undefined, null), false);
  });

  test('objects compare keys regardless of order', () => {
    assert.equal(deepEqual({ a: 1, b: { c: 2 } }, { b: { c: 2 }, a: 1 }), true);
    assert.equal(deepEqual({ a: 1 }, { a: 1, b: 2 }), false);
    assert.equal(deepEqual({ a: 1, b: 2 }, { a: 1 }), false);
    assert.equal(deepEqual({ a: 1, b: undefined }, { a: 1, c: undefined }), false);
    assert.equal(deepEqual({ a: { b: 1 } }, { a: { b: 2 } }), false);
  });

  test('arrays compare in order and are not objects', () => {
    assert.equal(deepEqual([1, [2, { a: 3 }]], [1, [2, { a: 3 }]]), true);
    assert.equal(deepEqual([1, 2], [2, 1]), false);
    assert.equal(deepEqual([1], [1, 2]), false);
    assert.equal(deepEqual([], {}), false);
    assert.equal(deepEqual({}, []), false);
    assert.equal(deepEqual({ 0: 1 }, [1]), false);
  });
});

describe('isPlainObject', () => {
  test('only non-null, non-array objects', () => {
    assert.equal(isPlainObject({}), true);
    assert.equal(isPlainObject([]), false);
    assert.equal(isPlainObject(null), false);
    assert.equal(isPlainObject('x'), false);
  });
});

describe('property: applying mergeDiff(a, b) to a gives b', () => {
  // Leaves without null (a merge patch cannot carry null values), without -0 and NaN (JSON has neither).
  const scalar = fc.oneof(
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (x === 0 ? 0 : x)),
    fc.string({ maxLength: 4 }),
    fc.boolean(),
  );
  const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
  const { object } = fc.letrec<{ object: JsonObject; value: Json }>((tie) => ({
    object: fc.dictionary(key, tie('value'), { maxKeys: 5, noNullPrototype: true }),
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      scalar,
      fc.array(scalar, { maxLength: 3 }),
      tie('object'),
    ),
  }));

  test('for random objects', () => {
    fc.assert(
      fc.property(object, object, (a, b) => {
        const patch = mergeDiff(a, b);
        if (patch === UNCHANGED) {
          assert.deepEqual(a, b);
          return;
        }
        const wire = JSON.parse(JSON.stringify(patch)) as Json;
        assert.deepEqual(applyMergePatch(structuredClone(a), wire), b);
      }),
      { numRuns: 300 },
    );
  });

  test('for an object and a modified copy of it', () => {
    // b shares most of a, so the diff is mostly small nested patches rather than whole values.
    const pair = fc
      .tuple(object, object, fc.array(key, { maxLength: 3 }))
      .map(([a, extra, removed]): [JsonObject, JsonObject] => {
        const b: JsonObject = { ...structuredClone(a), ...structuredClone(extra) };
        for (const k of removed) delete b[k];
        return [a, b];
      });
    fc.assert(
      fc.property(pair, ([a, b]) => {
        const patch = mergeDiff(a, b);
        if (patch === UNCHANGED) {
          assert.deepEqual(a, b);
          return;
        }
        assert.deepEqual(applyMergePatch(structuredClone(a), patch), b);
        // A diff of a value with itself is always UNCHANGED.
        assert.equal(mergeDiff(b, structuredClone(b)), UNCHANGED);
      }),
      { numRuns: 300 },
    );
  });
});

describe('applyMergePatch and hostile keys', () => {
  test('a __proto__ key in a patch never reaches a prototype', () => {
    const patch = JSON.parse('{"a":{"__proto__":{"polluted":true},"b":1},"__proto__":{"polluted":true}}');
    const target = applyMergePatch({}, patch) as Record<string, Record<string, unknown>>;
    assert.deepEqual(target, { a: { b: 1 } });
    assert.equal(Object.getPrototypeOf(target), Object.prototype);
    assert.equal(Object.getPrototypeOf(target.a), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});
