/**
 * Alerts in one shape whichever service raised them, and the newest `ingest.alerts_kept` of them. The account
 * monitor sends `{type, severity, message, value, threshold?, symbol?, timestamp}` (RFC 3339); the risk manager
 * `{level, policy_*, metric, metric_value, threshold_value, message, timestamp}` (Unix seconds), or at level
 * `emergency` `{type: "emergency_stop", reason, triggered_by, timestamp}`.
 */
import { createHash } from 'node:crypto';
import type { JsonObject } from '../merge-patch.ts';
import { PayloadError } from './schemas.ts';
import { toMillis } from './timestamps.ts';

export const SEVERITIES = ['INFO', 'WARNING', 'CRITICAL'] as const;
/** The risk manager's levels; `emergency` is an emergency stop. */
const LEVEL_SEVERITY: Record<string, (typeof SEVERITIES)[number]> = {
  info: 'INFO',
  warning: 'WARNING',
  critical: 'CRITICAL',
  emergency: 'CRITICAL',
};

/** Whether a (normalized) risk-manager alert announces an emergency stop. */
export function isEmergencyStop(alert: JsonObject): boolean {
  return alert.source === 'risk_manager' && String(alert.level).toLowerCase() === 'emergency';
}

/**
 * The stored form of a normalized payload: `{id, source, type, severity, message, timestamp (ms), …}`, the other
 * fields kept. The id is a digest of the payload (neither service sends one), the same in every replica that
 * receives it, so the same alert delivered twice is stored once. Throws PayloadError for an unknown severity or
 * level, or a timestamp that is no time.
 */
export function alertRecord(payload: JsonObject, form: 'account' | 'risk'): JsonObject {
  const timestamp = toMillis(payload.timestamp);
  if (timestamp === undefined)
    throw new PayloadError('alerts', 'invalid alerts payload: timestamp is no time');
  const digest = createHash('sha256').update(form).update(JSON.stringify(payload)).digest('hex').slice(0, 20);
  if (form === 'account') {
    const severity = String(payload.severity).toUpperCase();
    if (!(SEVERITIES as readonly string[]).includes(severity)) {
      throw new PayloadError(
        'alerts',
        `invalid alerts payload: severity ${JSON.stringify(payload.severity)}`,
      );
    }
    return { ...payload, id: digest, source: 'account_monitor', severity, timestamp };
  }
  const level = String(payload.level).toLowerCase();
  const severity = Object.hasOwn(LEVEL_SEVERITY, level) ? LEVEL_SEVERITY[level] : undefined;
  if (severity === undefined) {
    throw new PayloadError('alerts', `invalid alerts payload: level ${JSON.stringify(payload.level)}`);
  }
  const type =
    level === 'emergency' ? 'emergency_stop' : String(payload.type ?? payload.metric ?? 'risk_limit');
  const message = payload.message ?? payload.reason ?? payload.policy_name ?? type;
  const record: JsonObject = {
    ...payload,
    id: digest,
    source: 'risk_manager',
    type,
    severity,
    message,
    timestamp,
  };
  // One spelling in the stored alert, whichever service raised it.
  const { metric_value: value, threshold_value: threshold } = payload;
  delete record.metric_value;
  delete record.threshold_value;
  if (value !== undefined) record.value = value;
  if (threshold !== undefined) record.threshold = threshold;
  return record;
}

/** The ids of the alerts kept, oldest first by timestamp, at most `kept`. */
export class AlertBook {
  private readonly kept: number;
  /** id → timestamp. */
  private readonly times = new Map<string, number>();

  constructor(kept: number) {
    this.kept = kept;
  }

  has(id: string): boolean {
    return this.times.has(id);
  }

  /**
   * Whether an alert at `timestamp` has a place among the kept ones (a full book refuses one older than every
   * alert it holds).
   */
  admits(timestamp: number): boolean {
    if (this.times.size < this.kept) return true;
    return timestamp > this.oldest()[1];
  }

  /** Records alert `id`; returns the ids that no longer have a place (the oldest), to be removed. */
  add(id: string, timestamp: number): string[] {
    this.times.set(id, timestamp);
    const evicted: string[] = [];
    while (this.times.size > this.kept) {
      const [oldestId] = this.oldest();
      this.times.delete(oldestId);
      evicted.push(oldestId);
    }
    return evicted;
  }

  private oldest(): [string, number] {
    let oldest: [string, number] = ['', Number.POSITIVE_INFINITY];
    for (const entry of this.times) if (entry[1] < oldest[1]) oldest = entry;
    return oldest;
  }
}
