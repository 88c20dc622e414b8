import { randomBytes } from 'node:crypto';
import { type Json, type JsonObject, mergeDiff, UNCHANGED } from './merge-patch.ts';
import { type Filter, filterIncludes, KEYED_TOPICS, TOPICS, type Topic } from './topics.ts';

/** One applied change: which entity, and its value just before the change (undefined = it did not exist). */
interface JournalEntry {
  topic: Topic;
  key: string;
  before: Json | undefined;
  /** The estimated size of `before`, in bytes: what keeping this entry costs. */
  beforeSize: number;
}

/** The result of asking for changes since a sequence the journal no longer reaches. */
export const TOO_OLD = Symbol('too_old');

export interface StateOptions {
  /** Most journal entries kept; a reader further behind gets a full snapshot instead of a diff. */
  maxJournal?: number;
  /**
   * Most bytes of replaced values the journal keeps (by the sizes given to `set`); past it the oldest entries go
   * and a reader further behind gets a full snapshot. A slow reader cannot make the journal hold more than this.
   */
  maxJournalBytes?: number;
  /** Clock, for `lastUpdate`. */
  now?: () => number;
}

/** The key single-object topics (`account`, `system`) are stored under. */
export const SINGLE = '';

/**
 * The aggregated state: entities keyed by (topic, key), a global sequence that rises by one per applied change,
 * and a journal of what each change replaced, so that the diff since any recent sequence costs what changed,
 * not the size of the state. Values are immutable: a change stores a new object, never edits the old one.
 */
/** A write to the state as an observer sees it: `value` undefined for a removal, `before` the value replaced. */
export type WriteObserver = (
  topic: Topic,
  key: string,
  value: Json | undefined,
  before: Json | undefined,
) => void;

export class StateStore {
  readonly epoch: string = randomBytes(8).toString('hex');
  readonly startedAt: number;
  private readonly entities = new Map<Topic, Map<string, Json>>();
  /** The size `set` was given for each entity, by topic: what the budget of ingest.max_state_size counts. */
  private readonly sizes = new Map<Topic, Map<string, number>>();
  private bytesValue = 0;
  private journalBytesValue = 0;
  private readonly journal: JournalEntry[] = [];
  /** Sequence of `journal[0]`. */
  private journalFirstSeq = 1;
  private sequenceValue = 0;
  private lastUpdateAt: number | undefined;
  private readonly maxJournal: number;
  private readonly maxJournalBytes: number;
  private readonly now: () => number;
  private readonly writeObservers = new Set<WriteObserver>();

  constructor({
    maxJournal = 1_000_000,
    maxJournalBytes = Number.POSITIVE_INFINITY,
    now = Date.now,
  }: StateOptions = {}) {
    this.maxJournal = maxJournal;
    this.maxJournalBytes = maxJournalBytes;
    this.now = now;
    this.startedAt = now();
    for (const topic of TOPICS) {
      this.entities.set(topic, new Map());
      this.sizes.set(topic, new Map());
    }
  }

  /** The sum of the sizes of every stored entity, in bytes (as given to `set`). */
  get bytes(): number {
    return this.bytesValue;
  }

  /** The sizes of the values the journal keeps, in bytes. */
  get journalBytes(): number {
    return this.journalBytesValue;
  }

  /** The size `set` was given for one entity; 0 if it does not exist. */
  sizeOf(topic: Topic, key = SINGLE): number {
    return this.sizes.get(topic)!.get(key) ?? 0;
  }

  /** How many entities a topic holds. */
  count(topic: Topic): number {
    return this.entities.get(topic)!.size;
  }

  get sequence(): number {
    return this.sequenceValue;
  }

  get lastUpdate(): number | undefined {
    return this.lastUpdateAt;
  }

  get(topic: Topic, key = SINGLE): Json | undefined {
    return this.entities.get(topic)!.get(key);
  }

  keys(topic: Topic): IterableIterator<string> {
    return this.entities.get(topic)!.keys();
  }

  /** Number of entities per topic. */
  size(): Record<Topic, number> {
    const sizes = {} as Record<Topic, number>;
    for (const [topic, map] of this.entities) sizes[topic] = map.size;
    return sizes;
  }

  /**
   * Stores `value` as the entity (topic, key); `undefined` removes it. `size` is the value's size in bytes as the
   * caller measured it (ingest estimates its JSON size); the store only adds the sizes up. Returns the new sequence.
   */
  set(topic: Topic, key: string, value: Json | undefined, size = 0): number {
    const map = this.entities.get(topic)!;
    const sizes = this.sizes.get(topic)!;
    const before = map.get(key);
    const beforeSize = sizes.get(key) ?? 0;
    if (value === undefined) {
      if (before === undefined) return this.sequenceValue;
      map.delete(key);
      sizes.delete(key);
      this.bytesValue -= beforeSize;
    } else {
      map.set(key, value);
      sizes.set(key, size);
      this.bytesValue += size - beforeSize;
    }
    this.journal.push({ topic, key, before, beforeSize });
    this.journalBytesValue += beforeSize;
    if (this.journal.length > this.maxJournal) this.dropJournal(this.journal.length - this.maxJournal);
    if (this.journalBytesValue > this.maxJournalBytes) this.dropJournalBytes();
    this.lastUpdateAt = this.now();
    this.sequenceValue += 1;
    for (const observer of this.writeObservers) observer(topic, key, value, before);
    return this.sequenceValue;
  }

  /**
   * Calls `observer` after every write that changed an entity (the history recorder), with the value before it;
   * returns a function that removes it. An observer must not write to the state.
   */
  observeWrites(observer: WriteObserver): () => void {
    this.writeObservers.add(observer);
    return () => this.writeObservers.delete(observer);
  }

  /** The full view of a subscription set, as sent in a `state_update`. */
  snapshot(filter: Filter): JsonObject {
    const data: JsonObject = {};
    for (const topic of TOPICS) {
      const scope = filter.get(topic);
      if (scope === undefined) continue;
      const map = this.entities.get(topic)!;
      if (!KEYED_TOPICS.has(topic)) {
        const value = map.get(SINGLE);
        if (value !== undefined) data[topic] = value;
        continue;
      }
      const section: JsonObject = {};
      if (scope === 'all') {
        for (const [key, value] of map) section[key] = value;
      } else {
        for (const key of scope) {
          const value = map.get(key);
          if (value !== undefined) section[key] = value;
        }
      }
      data[topic] = section;
    }
    return data;
  }

  /**
   * The merge patch that turns the view of `filter` at sequence `since` into the view now: `undefined` when nothing
   * in the view changed, TOO_OLD when the journal no longer reaches back to `since`.
   */
  changesSince(since: number, filter: Filter): JsonObject | undefined | typeof TOO_OLD {
    if (since >= this.sequenceValue) return undefined;
    if (since < this.journalFirstSeq - 1) return TOO_OLD;
    // The first journal entry after `since` for an entity holds its value at `since`.
    const valuesAtSince = new Map<Topic, Map<string, Json | undefined>>();
    for (let index = since + 1 - this.journalFirstSeq; index < this.journal.length; index++) {
      const { topic, key, before } = this.journal[index];
      if (!filterIncludes(filter, topic, key)) continue;
      let keys = valuesAtSince.get(topic);
      if (keys === undefined) {
        keys = new Map();
        valuesAtSince.set(topic, keys);
      }
      if (!keys.has(key)) keys.set(key, before);
    }
    let patch: JsonObject | undefined;
    for (const [topic, keys] of valuesAtSince) {
      const map = this.entities.get(topic)!;
      for (const [key, before] of keys) {
        const change = mergeDiff(before, map.get(key));
        if (change === UNCHANGED) continue;
        patch ??= {};
        if (KEYED_TOPICS.has(topic)) {
          patch[topic] ??= {};
          (patch[topic] as JsonObject)[key] = change;
        } else {
          patch[topic] = change;
        }
      }
    }
    return patch;
  }

  /**
   * The value of an entity at sequence `since` (what a client holding that view has), from the journal; the current
   * value when it has not changed since. `undefined` also when the journal no longer reaches back to `since`.
   */
  valueAt(since: number, topic: Topic, key = SINGLE): Json | undefined {
    if (since < this.journalFirstSeq - 1) return undefined;
    for (let index = Math.max(0, since + 1 - this.journalFirstSeq); index < this.journal.length; index++) {
      const entry = this.journal[index];
      if (entry.topic === topic && entry.key === key) return entry.before;
    }
    return this.get(topic, key);
  }

  /** Forgets journal entries at or below `sequence`: no reader needs changes from before it. */
  trimJournal(sequence: number): void {
    const count = Math.min(sequence - this.journalFirstSeq + 1, this.journal.length);
    if (count > 0) this.dropJournal(count);
  }

  get journalLength(): number {
    return this.journal.length;
  }

  private dropJournal(count: number): void {
    for (let index = 0; index < count; index++) this.journalBytesValue -= this.journal[index].beforeSize;
    this.journal.splice(0, count);
    this.journalFirstSeq += count;
  }

  /** Drops the oldest entries until the journal is within maxJournalBytes (the newest entry always stays). */
  private dropJournalBytes(): void {
    let excess = this.journalBytesValue - this.maxJournalBytes;
    let count = 0;
    while (excess > 0 && count < this.journal.length - 1) excess -= this.journal[count++].beforeSize;
    this.dropJournal(count);
  }
}
