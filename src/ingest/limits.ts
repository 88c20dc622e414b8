import type { StateStore } from '../state.ts';
import type { Topic } from '../topics.ts';
import { UNSAFE_KEYS } from './normalize.ts';
import { PayloadError } from './schemas.ts';

/** The keyed topics whose entries are capped by ingest.max_entries. */
export const ENTRY_CAPPED = new Set<Topic>(['orders', 'positions', 'strategies']);

/**
 * Throws PayloadError (with its limit) if storing a record of `size` bytes under `topic`/`key` is refused: an unsafe
 * id, a new entry of orders, positions or strategies past `maxEntries`, or growth past `maxStateSize`. A write that
 * does not grow the state always passes, so a full state can still be updated and emptied.
 */
export function checkWrite(
  state: StateStore,
  topic: Topic,
  key: string,
  size: number,
  maxEntries: number,
  maxStateSize: number,
): void {
  if (UNSAFE_KEYS.has(key)) {
    throw new PayloadError(topic, `invalid ${topic} payload: id ${JSON.stringify(key)} is not allowed`);
  }
  const exists = state.get(topic, key) !== undefined;
  if (!exists && ENTRY_CAPPED.has(topic) && state.count(topic) >= maxEntries) {
    throw new PayloadError(
      topic,
      `${topic} ${key} refused: ingest.max_entries (${maxEntries}) reached`,
      'max_entries',
    );
  }
  const growth = size - state.sizeOf(topic, key);
  if (growth > 0 && state.bytes + growth > maxStateSize) {
    throw new PayloadError(
      topic,
      `${topic} ${key} refused: ingest.max_state_size (${maxStateSize} bytes) is full`,
      'max_state_size',
    );
  }
}
