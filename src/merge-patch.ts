/** JSON Merge Patch (RFC 7396): computing the patch between two values, and applying one. */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value if it is a finite number, else undefined: how a renderer reads a field the state may lack. */
export function finiteNumber(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  if (aKeys.length !== Object.keys(b).length) return false;
  for (const key of aKeys) {
    if (!Object.hasOwn(b, key) || !deepEqual((a as JsonObject)[key], (b as JsonObject)[key])) return false;
  }
  return true;
}

/** Sentinel for "no change": distinct from `null`, which in a merge patch means "remove". */
export const UNCHANGED = Symbol('unchanged');

/**
 * The merge patch that turns `before` into `after` (`undefined` = absent).
 * Objects are compared field by field; arrays and scalars are replaced whole, as RFC 7396 requires.
 */
export function mergeDiff(before: Json | undefined, after: Json | undefined): Json | typeof UNCHANGED {
  if (after === undefined) return before === undefined ? UNCHANGED : null;
  if (!isPlainObject(before) || !isPlainObject(after)) {
    return before !== undefined && deepEqual(before, after) ? UNCHANGED : after;
  }
  let patch: JsonObject | undefined;
  for (const key of Object.keys(after)) {
    const change = Object.hasOwn(before, key) ? mergeDiff(before[key], after[key]) : after[key];
    if (change === UNCHANGED) continue;
    patch ??= {};
    patch[key] = change;
  }
  for (const key of Object.keys(before)) {
    if (Object.hasOwn(after, key)) continue;
    patch ??= {};
    patch[key] = null;
  }
  return patch ?? UNCHANGED;
}

/** Applies a merge patch; returns the new value. Objects in `target` are modified in place. */
export function applyMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isPlainObject(patch)) return patch;
  const result: JsonObject = isPlainObject(target) ? target : {};
  for (const [key, value] of Object.entries(patch)) {
    // A patch from an untrusted peer must not reach the prototype (the hub never sends such a key).
    if (key === '__proto__') continue;
    if (value === null) delete result[key];
    else result[key] = applyMergePatch(result[key], value);
  }
  return result;
}
