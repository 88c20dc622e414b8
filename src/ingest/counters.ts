/** What ingest counts, by source: read by /debug (`ingest`) and the metrics at scrape time. */
import { LIMITS, type Limit, PayloadError } from './schemas.ts';

/** Where a payload came from: a Redis message (or snapshot key), a NATS message, or a record of a backend poll. */
export const INGEST_SOURCES = ['redis', 'nats', 'poll'] as const;
export type IngestSource = (typeof INGEST_SOURCES)[number];
/** The sources that deliver one message at a time (Ingest.handleMessage); a poll delivers whole sections. */
export type MessageSource = Exclude<IngestSource, 'poll'>;

export interface IngestCounters {
  /** Payloads accepted, by source and topic: a Redis message, or one record of a poll (`dashboard_ingest_messages_total`). */
  messages: Record<IngestSource, Record<string, number>>;
  /** Payloads refused, by source and topic (`unknown` for a channel that is no ingest topic); a refused poll counts once. */
  invalid: Record<IngestSource, Record<string, number>>;
  /**
   * Valid payloads not written because the state holds a later version (an order update older than the order held),
   * by source and topic; also counted in `messages`.
   */
  stale: Record<IngestSource, Record<string, number>>;
  /** Valid payloads refused by a limit, by limit and topic, from every source (also counted in `invalid`). */
  refused: Record<Limit, Record<string, number>>;
  /** Symbols forgotten after ingest.symbol_idle_ttl without an update. */
  symbolsEvicted: number;
}

function bySource(): Record<IngestSource, Record<string, number>> {
  return Object.fromEntries(INGEST_SOURCES.map((source) => [source, {}])) as Record<
    IngestSource,
    Record<string, number>
  >;
}

export function newCounters(): IngestCounters {
  return {
    messages: bySource(),
    invalid: bySource(),
    stale: bySource(),
    refused: Object.fromEntries(LIMITS.map((limit) => [limit, {}])) as Record<Limit, Record<string, number>>,
    symbolsEvicted: 0,
  };
}

/** Counts `records` payloads of `topic` accepted from `source` (or, with `kind` `stale`, not written as stale). */
export function countAccepted(
  counters: IngestCounters,
  source: IngestSource,
  topic: string,
  records: number,
  kind: 'messages' | 'stale' = 'messages',
): void {
  if (records === 0) return;
  const byTopic = counters[kind][source];
  byTopic[topic] = (byTopic[topic] ?? 0) + records;
}

/**
 * Counts what threw `error` out of ingest: by its limit if a limit refused it, and as invalid from `source`
 * (under `label`) when the payload came from one.
 */
export function countFailed(
  counters: IngestCounters,
  error: unknown,
  source?: IngestSource,
  label?: string,
): void {
  if (error instanceof PayloadError && error.limit !== undefined) {
    const byTopic = counters.refused[error.limit];
    byTopic[error.topic] = (byTopic[error.topic] ?? 0) + 1;
  }
  if (source !== undefined && label !== undefined) {
    const byTopic = counters.invalid[source];
    byTopic[label] = (byTopic[label] ?? 0) + 1;
  }
}

/** Counts by source and topic as label sets (`{source, topic}`) and values, for the metrics. */
export function countsBySource(
  counts: Record<IngestSource, Record<string, number>>,
): [{ source: string; topic: string }, number][] {
  return Object.entries(counts).flatMap(([source, byTopic]) =>
    Object.entries(byTopic).map(([topic, count]): [{ source: string; topic: string }, number] => [
      { source, topic },
      count,
    ]),
  );
}
