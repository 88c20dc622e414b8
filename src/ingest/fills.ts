/** A fill as order-execution (`fill_id`) or the account monitor's tooling (`id`) sends it, made one shape. */
import type { JsonObject } from '../merge-patch.ts';
import type { RecordSize } from './normalize.ts';
import { PayloadError } from './schemas.ts';
import { toMillis } from './timestamps.ts';

/**
 * Gives a normalized fill its `fill_id` (from `fill_id` or `id`, as text; `size` grown to match) and its
 * `timestamp` in ms, in place; throws PayloadError without an id or with a timestamp that is no time.
 */
export function identifyFill(record: JsonObject, size: RecordSize): void {
  const id = record.fill_id ?? record.id;
  if (id === undefined) throw new PayloadError('fills', 'invalid fills payload: neither fill_id nor id');
  if (record.fill_id === undefined) size.add('fill_id'.length - 'id'.length);
  // Counted as a number (8 bytes), stored as its text.
  if (typeof id === 'number') size.add(String(id).length + 2 - 8);
  const timestamp = toMillis(record.timestamp);
  if (timestamp === undefined) throw new PayloadError('fills', 'invalid fills payload: timestamp is no time');
  delete record.id;
  record.fill_id = String(id);
  record.timestamp = timestamp;
}
