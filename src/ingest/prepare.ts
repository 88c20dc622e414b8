/**
 * One payload checked and normalized into the record its topic stores, with its estimated size: the schema
 * (schemas.ts), the bounded copy (normalize.ts), and each topic's own rules (orderbook.ts, fills.ts, alerts.ts).
 * Throws PayloadError; changes nothing.
 */
import type { IngestTopic } from '../topics.ts';
import { alertRecord } from './alerts.ts';
import { identifyFill } from './fills.ts';
import { normalize, numericMap, type Prepared, RecordSize, withoutNulls } from './normalize.ts';
import { prepareOrderbook } from './orderbook.ts';
import {
  checkers,
  NUMERIC_FIELDS,
  orderEnvelopeChecker,
  PayloadError,
  riskAlertChecker,
  schemaError,
} from './schemas.ts';
import { toMillis } from './timestamps.ts';

export interface PrepareOptions {
  orderbookDepth: number;
  maxRecordSize: number;
}

export function preparePayload(options: PrepareOptions, topic: IngestTopic, payload: unknown): Prepared {
  // A book is mostly levels, of which only the best few are kept: it is checked and reduced in one pass.
  if (topic === 'orderbook') return prepareOrderbook(payload, options.orderbookDepth, options.maxRecordSize);
  if (topic === 'orders' && orderEnvelopeChecker.Check(payload)) payload = payload.order;
  if (topic === 'alerts' && riskAlertChecker.Check(payload)) return prepareAlert(options, payload, 'risk');
  if (!checkers[topic].Check(payload)) throw schemaError(topic, payload);
  if (topic === 'alerts') return prepareAlert(options, payload, 'account');
  const size = new RecordSize(topic, options.maxRecordSize);
  const record = normalize(payload as Record<string, unknown>, NUMERIC_FIELDS[topic], size);
  if (topic === 'fills') identifyFill(record, size);
  if (topic === 'account') {
    // The account monitor cannot always total the balances in USD; it always has balances.
    if (record.total_balance === undefined && record.balances === undefined) {
      throw new PayloadError('account', 'invalid account payload: neither total_balance nor balances');
    }
    numericMap(record, 'balances', 'account');
  }
  if (topic === 'risk') {
    // Without a time, the next message could not tell which is later.
    if (toMillis(record.timestamp) === undefined)
      throw new PayloadError('risk', 'invalid risk payload: timestamp is no time');
    numericMap(record, 'position_concentration', 'risk');
    numericMap(record, 'limit_utilization', 'risk');
  }
  return { record, size: size.bytes };
}

/** An alert in its stored form (alerts.ts); its size counted again on that form, as its fields changed. */
function prepareAlert(options: PrepareOptions, payload: unknown, form: 'account' | 'risk'): Prepared {
  const normalized = normalize(
    payload as Record<string, unknown>,
    NUMERIC_FIELDS.alerts,
    new RecordSize('alerts', options.maxRecordSize),
  );
  const size = new RecordSize('alerts', options.maxRecordSize);
  return { record: withoutNulls(alertRecord(normalized, form), size), size: size.bytes };
}
