/**
 * The `risk` record between polls: the risk manager's metrics (`risk.metrics`) merged into it, and an emergency stop
 * (`risk.alerts.emergency`) set on it, as the next poll would show them. Pure: the caller writes the result.
 */
import { isPlainObject, type Json, type JsonObject } from '../merge-patch.ts';
import { type Prepared, RecordSize, withoutNulls } from './normalize.ts';
import { isNewer } from './reconcile.ts';

/**
 * `current` with the metrics of a `risk` payload merged in (the emergency stop and the fields the message lacks
 * kept; its `timestamp` becomes `updated_at`, as in a poll), or undefined when `current` is later.
 */
export function riskWithMetrics(
  current: Json | undefined,
  metrics: JsonObject,
  maxRecordSize: number,
): Prepared | undefined {
  const { timestamp, ...fields } = metrics;
  const incoming: JsonObject = { ...fields, updated_at: timestamp };
  if (isNewer(current, incoming)) return undefined;
  const size = new RecordSize('risk', maxRecordSize);
  const record = withoutNulls({ ...(isPlainObject(current) ? current : {}), ...incoming }, size);
  return { record, size: size.bytes };
}

/** `current` with `emergency_stop` set from an emergency alert (stored form, alerts.ts), the rest kept. */
export function riskWithStop(current: Json | undefined, alert: JsonObject, maxRecordSize: number): Prepared {
  const base = isPlainObject(current) ? current : {};
  const previousStop = isPlainObject(base.emergency_stop) ? base.emergency_stop : {};
  const stop: JsonObject = {
    ...previousStop,
    is_stopped: true,
    // Unix seconds, as the poll's EmergencyStopStatus.
    stopped_at: Math.floor((alert.timestamp as number) / 1000),
  };
  if (alert.reason !== undefined) stop.stop_reason = alert.reason;
  if (alert.triggered_by !== undefined) stop.triggered_by = alert.triggered_by;
  const size = new RecordSize('risk', maxRecordSize);
  return { record: withoutNulls({ ...base, emergency_stop: stop }, size), size: size.bytes };
}
