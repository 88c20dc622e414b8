/**
 * Reconciling a section with a backend's full list (a poll), all or nothing: the plan (what to write, what to
 * remove) is made and checked against the limits before anything is written.
 */
import type { Json, JsonObject } from '../merge-patch.ts';
import type { StateStore } from '../state.ts';
import type { Prepared } from './normalize.ts';
import { isStaleOrder } from './orders.ts';
import { PayloadError } from './schemas.ts';
import { toMillis } from './timestamps.ts';

/** The keyed sections a backend answers as a full list. */
export type PolledSection = 'orders' | 'positions' | 'strategies';

/** What reconciling a section changes: records to write (in order) and keys to remove. */
export interface SectionPlan {
  writes: Prepared[];
  removals: string[];
  /** Returned records not written: the state holds a later version. */
  stale: number;
}

export interface PlanOptions {
  /** When the poll began: an entity written after it was updated since, and is not removed. */
  pollStartedAt: number;
  /** false for a truncated list: nothing is removed. */
  complete: boolean;
  /** When the entity under `key` was last written, if it was. */
  writtenAt: (key: string) => number | undefined;
  /** Whether the entity under `key` stays although the list lacks it (a terminal order within its retention). */
  retained: (key: string) => boolean;
}

/** The key of a record of a polled section in the state. */
export function sectionKey(topic: PolledSection, record: JsonObject): string {
  return topic === 'orders'
    ? String(record.order_id)
    : topic === 'positions'
      ? String(record.symbol).toUpperCase()
      : String(record.id);
}

/** Whether `current` carries a later `updated_at` than `incoming` (both must have one). */
export function isNewer(current: Json | undefined, incoming: JsonObject): boolean {
  if (current === undefined || current === null || typeof current !== 'object' || Array.isArray(current))
    return false;
  const currentTime = toMillis(current.updated_at);
  const incomingTime = toMillis(incoming.updated_at);
  return currentTime !== undefined && incomingTime !== undefined && currentTime > incomingTime;
}

/** Whether `incoming` must not overwrite `current`: an older order (isStaleOrder), else an older `updated_at`. */
export function isStale(topic: string, current: Json | undefined, incoming: JsonObject): boolean {
  return topic === 'orders' ? isStaleOrder(current, incoming) : isNewer(current, incoming);
}

/**
 * The changes that replace `topic` with a backend's full list of `prepared` records:
 * - a returned record is written unless the state holds a later one (isStale), e.g. from Redis or NATS;
 * - an entity the list no longer has is removed, unless it was written after the poll began (a newer update)
 *   or is retained (a terminal order within its retention). An incomplete list removes nothing.
 */
export function planSection(
  state: StateStore,
  topic: PolledSection,
  prepared: Prepared[],
  options: PlanOptions,
): SectionPlan {
  const returned = new Set(prepared.map(({ record }) => sectionKey(topic, record)));
  const writes = prepared.filter(
    ({ record }) => !isStale(topic, state.get(topic, sectionKey(topic, record)), record),
  );
  const removals: string[] = [];
  if (options.complete) {
    for (const key of state.keys(topic)) {
      if (returned.has(key)) continue;
      if ((options.writtenAt(key) ?? 0) > options.pollStartedAt) continue;
      if (options.retained(key)) continue;
      removals.push(key);
    }
  }
  return { writes, removals, stale: prepared.length - writes.length };
}

/**
 * Throws PayloadError (with its limit) if `plan` would take the section past `maxEntries` or the state past
 * `maxStateSize`; a plan that does not grow what is over a limit passes, so a full state can still be updated.
 */
export function checkSection(
  state: StateStore,
  topic: PolledSection,
  { writes, removals }: SectionPlan,
  maxEntries: number,
  maxStateSize: number,
): void {
  // Removed keys are never among the written ones (those were returned by the poll).
  let count = state.count(topic) - removals.length;
  let bytes = state.bytes;
  for (const key of removals) bytes -= state.sizeOf(topic, key);
  const written = new Map<string, number>();
  for (const { record, size } of writes) written.set(sectionKey(topic, record), size);
  for (const [key, size] of written) {
    if (state.get(topic, key) === undefined) count++;
    bytes += size - state.sizeOf(topic, key);
  }
  if (count > maxEntries && count > state.count(topic)) {
    throw new PayloadError(
      topic,
      `${topic} list of ${count} entries refused: ingest.max_entries (${maxEntries}) reached`,
      'max_entries',
    );
  }
  if (bytes > maxStateSize && bytes > state.bytes) {
    throw new PayloadError(
      topic,
      `${topic} list refused: ingest.max_state_size (${maxStateSize} bytes) would be exceeded`,
      'max_state_size',
    );
  }
}
