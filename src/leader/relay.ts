/**
 * The leader's polls, relayed to the other replicas through Redis: each result and each status change is published
 * on `<key>:polls` as an envelope numbered within the leader's term, and the newest of each kind and source is kept
 * in the hash `<key>:sections`. A replica applies envelopes in order per kind and source; one that sees a number
 * missing (it was away, Redis dropped it) reads the hash. Knows nothing of Fastify, the poller or the state.
 */
import { SOURCE_NAMES, type SourceName } from '../backends.ts';
import type { Json } from '../merge-patch.ts';
import type { BreakerState, SourceHealth, SourceStatus } from '../poller.ts';

/** The largest envelope taken: an order book of 5,000 orders is ~2 MB; Redis cuts a subscriber at 32 MB. */
export const MAX_ENVELOPE_BYTES = 16 * 1024 * 1024;
const MAX_HOLDER_LENGTH = 256;
const MAX_TEXT_LENGTH = 4096;
/** The most backend answers one poll has (risk and strategies make two calls). */
const MAX_ANSWERS = 4;

export type RelayKind = 'data' | 'status';

interface EnvelopeBase {
  v: 1;
  /** The leader's term (the fleet's takeover count when it took the lease) and the envelope's number in it. */
  term: number;
  seq: number;
  holder: string;
  source: SourceName;
}
/** A successful poll: the backends' answers as received, which every replica parses as the leader did. */
export interface DataEnvelope extends EnvelopeBase {
  kind: 'data';
  /** When the poll began (ms since the epoch, the leader's clock). */
  started_at: number;
  answers: Json[];
}
export interface StatusEnvelope extends EnvelopeBase {
  kind: 'status';
  status: SourceStatus;
}
export type Envelope = DataEnvelope | StatusEnvelope;

/** Why an envelope was not applied (dashboard_leader_relay_total{outcome}). */
export type RelayOutcome = 'applied' | 'stale' | 'invalid' | 'resync';

export class RelayError extends Error {}

const HEALTH: readonly SourceHealth[] = ['ok', 'degraded', 'down'];
const BREAKER: readonly BreakerState[] = ['closed', 'open', 'half_open'];

const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
const isText = (value: unknown, max = MAX_TEXT_LENGTH): value is string =>
  typeof value === 'string' && value.length <= max;

/** The field of `<key>:sections` an envelope is kept under. */
export const fieldOf = (envelope: Pick<Envelope, 'kind' | 'source'>) => `${envelope.kind}:${envelope.source}`;

/** A source status as relayed: only its known fields, each checked, in a new object. */
function parseStatus(value: unknown): SourceStatus {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new RelayError('status is not an object');
  const record = value as Record<string, unknown>;
  const { status, breaker } = record;
  if (!HEALTH.includes(status as SourceHealth)) throw new RelayError('status.status is not a health');
  if (!BREAKER.includes(breaker as BreakerState))
    throw new RelayError('status.breaker is not a breaker state');
  const optional = (name: string) => {
    const field = Object.hasOwn(record, name) ? record[name] : null;
    if (field === null || field === undefined) return null;
    if (!isText(field)) throw new RelayError(`status.${name} is not a string`);
    return field;
  };
  return {
    status: status as SourceHealth,
    breaker: breaker as BreakerState,
    last_success: optional('last_success'),
    last_error: optional('last_error'),
    stale_since: optional('stale_since'),
  };
}

/** Parses and checks one envelope; throws RelayError saying what is wrong. */
export function parseEnvelope(payload: Buffer | string): Envelope {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (bytes > MAX_ENVELOPE_BYTES)
    throw new RelayError(`envelope of ${bytes} bytes is over ${MAX_ENVELOPE_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch {
    throw new RelayError('envelope is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new RelayError('envelope is not an object');
  const record = value as Record<string, unknown>;
  if (record.v !== 1) throw new RelayError('envelope version is not 1');
  if (!isCount(record.term) || !isCount(record.seq))
    throw new RelayError('envelope term or seq is not a positive integer');
  if (!isText(record.holder, MAX_HOLDER_LENGTH) || record.holder === '')
    throw new RelayError('envelope holder is not a replica id');
  if (!SOURCE_NAMES.includes(record.source as SourceName))
    throw new RelayError('envelope source is not a backend');
  const base = {
    v: 1 as const,
    term: record.term,
    seq: record.seq,
    holder: record.holder,
    source: record.source as SourceName,
  };
  if (record.kind === 'status') return { ...base, kind: 'status', status: parseStatus(record.status) };
  if (record.kind !== 'data') throw new RelayError('envelope kind is not data or status');
  const { started_at: startedAt, answers } = record;
  if (!isCount(startedAt)) throw new RelayError('envelope started_at is not a time');
  if (!Array.isArray(answers) || answers.length === 0 || answers.length > MAX_ANSWERS)
    throw new RelayError(`envelope answers is not a list of 1 to ${MAX_ANSWERS}`);
  return { ...base, kind: 'data', started_at: startedAt, answers: answers as Json[] };
}

/** Numbers the envelopes of one term (the leader's side). */
export class RelaySequence {
  private term = 0;
  private seq = 0;

  /** The next envelope of `term` (a new term starts at 1). */
  next(term: number): { term: number; seq: number } {
    if (term !== this.term) {
      this.term = term;
      this.seq = 0;
    }
    this.seq++;
    return { term, seq: this.seq };
  }
}

/**
 * The receiving side's order: an envelope is applied unless one as new or newer of its kind and source was; a term
 * older than the newest seen is a deposed leader's and is dropped, unless it comes from the replica that holds the
 * lease now (Redis lost its keys, and the count of terms started again). `accept` says whether the stream had a gap
 * (then the kept copies should be read); `applied` records an envelope once it was applied.
 */
export class RelayOrder {
  private term = 0;
  private seq = 0;
  private readonly applied = new Map<string, { term: number; seq: number }>();

  /** Whether to apply `envelope`, and whether a number before it is missing. */
  accept(
    envelope: Envelope,
    { fromCopy = false, holder }: { fromCopy?: boolean; holder?: string | null } = {},
  ): { apply: boolean; gap: boolean } {
    const { term, seq } = envelope;
    if (!fromCopy && term < this.term) {
      // A deposed leader's late envelope; a kept copy of an older term may still be the newest of its field.
      if (envelope.holder !== holder) return { apply: false, gap: false };
      // The lease's holder numbers from a lower term: the count was lost with Redis's keys. Start again from it.
      this.term = 0;
      this.seq = 0;
      this.applied.clear();
    }
    const gap = !fromCopy && (term === this.term ? seq > this.seq + 1 : seq !== 1);
    if (term > this.term || (term === this.term && seq > this.seq)) {
      this.term = term;
      this.seq = seq;
    }
    const last = this.applied.get(fieldOf(envelope));
    const apply = !last || last.term < term || (last.term === term && last.seq < seq);
    return { apply, gap };
  }

  /** `envelope` was applied: nothing older of its kind and source will be. */
  markApplied(envelope: Envelope): void {
    this.applied.set(fieldOf(envelope), { term: envelope.term, seq: envelope.seq });
  }
}
