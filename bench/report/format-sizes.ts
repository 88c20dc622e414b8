/** The msgpack-records question: the hub's real diffs re-encoded as JSON, MessagePack and msgpackr records. */
import { Packr, Unpackr } from 'msgpackr';
import type { RunResult } from '../run/results.ts';
import { pct } from './units.ts';

export interface FormatRow {
  set: string;
  samples: number;
  json: number;
  msgpack: number;
  records: number;
  jsonUs: number;
  msgpackUs: number;
  recordsUs: number;
}

/** Mean encoded size and encode time of the hub's real diffs (decoded samples) in JSON, MessagePack and msgpackr records. */
export function formatSizes(runs: RunResult[]): FormatRow[] {
  const bySet = new Map<string, unknown[]>();
  for (const run of runs) {
    if (run.kind !== 'hub' || !run.samples) continue;
    for (const [key, list] of Object.entries(run.samples)) {
      const [type, , set] = key.split('|');
      const name = `${type}|${set}`;
      const into = bySet.get(name) ?? [];
      if (into.length < 40) into.push(...list.slice(0, 40 - into.length));
      bySet.set(name, into);
    }
  }
  const plain = new Packr({ useRecords: false, mapsAsObjects: true });
  const rows: FormatRow[] = [];
  for (const [set, messages] of [...bySet].sort()) {
    if (messages.length === 0) continue;
    const time = (encode: (m: unknown) => Buffer | string): number => {
      const rounds = 20;
      const started = performance.now();
      for (let i = 0; i < rounds; i++) for (const m of messages) encode(m);
      return ((performance.now() - started) * 1000) / (rounds * messages.length);
    };
    const json = (m: unknown) => Buffer.from(JSON.stringify(m));
    const msgpack = (m: unknown) => plain.pack(m);
    // A fresh Packr per message: the record definitions travel inside each frame, so any client of a group
    // can decode it whenever it joined (a shared, sequential structure table would not allow that).
    const records = (m: unknown) => new Packr({ useRecords: true }).pack(m);
    const mean = (encode: (m: unknown) => Buffer | string) =>
      messages.reduce((sum: number, m) => sum + encode(m).length, 0) / messages.length;
    // Check the records frames really decode on their own.
    new Unpackr().unpack(records(messages[0]));
    rows.push({
      set,
      samples: messages.length,
      json: mean(json),
      msgpack: mean(msgpack),
      records: mean(records),
      jsonUs: time(json),
      msgpackUs: time(msgpack),
      recordsUs: time(records),
    });
  }
  return rows;
}

/** "83% fewer" or, for a negative saving, "2% more". */
export function savedText(saving: number): string {
  return saving >= 0 ? `${pct(saving)} fewer` : `${pct(-saving)} more`;
}
