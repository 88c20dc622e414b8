/** The issue's targets, met or missed, and the derived figures they need (bandwidth per set, RSS slope). */
import type { BenchResults, RunResult } from '../run/results.ts';
import { savedText } from './format-sizes.ts';
import { CADENCE, fmt, INTERVAL, mainType, ms, pct } from './units.ts';

interface Target {
  name: string;
  goal: string;
  figure: string;
  met: boolean | undefined;
}

export function find(results: BenchResults, kind: string, clients: number): RunResult | undefined {
  return results.runs.find((r) => r.kind === kind && r.clients === clients);
}

/** Per subscription set: mean bytes per client per second at full cadence (mean message size × updates/s). */
function bytesPerSet(run: RunResult, format?: string): Map<string, { bytes: number; clients: number }> {
  const sets = new Map<string, { bytes: number; clients: number; size: number; msgs: number }>();
  for (const [key, c] of Object.entries(run.classes)) {
    const [type, f, set] = key.split('|');
    if (format && f !== format) continue;
    const name = `${type}|${set}`;
    const into = sets.get(name) ?? { bytes: 0, clients: 0, size: 0, msgs: 0 };
    into.size += c.bytes;
    into.msgs += c.msgs;
    into.clients += c.clients;
    into.bytes = into.msgs > 0 ? (into.size / into.msgs) * CADENCE[type] : 0;
    sets.set(name, into);
  }
  return sets;
}

export interface BandwidthRow {
  set: string;
  /** The scenario the set's figures come from (the smallest that has it, hub and naive). */
  clients: number;
  naive: number;
  hubJson: number;
  hubMsgpack: number;
  /** Clients of this set in that scenario (the weight of the row in the overall figure). */
  weight: number;
}

/** Per subscription set, bytes per client per second at full cadence: naive snapshots against the hub's diffs. */
export function bandwidth(results: BenchResults): BandwidthRow[] {
  const rows = new Map<string, BandwidthRow>();
  for (const clients of [...results.options.scenarios].sort((a, b) => a - b)) {
    const hub = find(results, 'hub', clients);
    const naive = find(results, 'naive', clients);
    if (!hub || !naive) continue;
    const json = bytesPerSet(hub, 'json');
    const msgpack = bytesPerSet(hub, 'msgpack');
    for (const [set, n] of bytesPerSet(naive)) {
      if (rows.has(set) || n.bytes === 0) continue;
      rows.set(set, {
        set,
        clients,
        naive: n.bytes,
        hubJson: json.get(set)?.bytes ?? Number.NaN,
        hubMsgpack: msgpack.get(set)?.bytes ?? Number.NaN,
        weight: (json.get(set)?.clients ?? 0) + (msgpack.get(set)?.clients ?? 0),
      });
    }
  }
  return [...rows.values()].sort((a, b) => a.set.localeCompare(b.set));
}

export function targets(results: BenchResults): Target[] {
  const list: Target[] = [];
  for (const clients of [2000, 5000]) {
    const hub = find(results, 'hub', clients);
    const limit = find(results, 'limit', clients);
    if (!hub || !limit) continue;
    const ratio = hub.deliveriesPerSec / limit.deliveriesPerSec;
    list.push({
      name: `Fan-out efficiency, ${fmt(clients)} clients`,
      goal: 'hub deliveries/s ≥ 80% of limit',
      figure: `${fmt(hub.deliveriesPerSec)} / ${fmt(limit.deliveriesPerSec)} = ${pct(ratio)}; CPU per delivery ${fmt(hub.serverCpuUsPerDelivery, 1)} µs vs ${fmt(limit.serverCpuUsPerDelivery, 1)} µs`,
      met: ratio >= 0.8,
    });
  }
  const hub2000 = find(results, 'hub', 2000);
  if (hub2000 && hub2000.tui > 0) {
    const beyond = hub2000.latency.tui.p99 - INTERVAL.tui;
    list.push({
      name: 'Latency, 2,000 TUI clients',
      goal: 'p99 publish→receive ≤ 50 ms beyond the tick wait (≤ 150 ms at 100 ms)',
      figure: `p99 ${ms(hub2000.latency.tui.p99)} ms = interval ${beyond < 0 ? '−' : '+'} ${ms(Math.abs(beyond))} ms; tick→receive p99 ${ms(hub2000.tickLatency.tui.p99)} ms`,
      met: beyond <= 50,
    });
  }
  const hubRuns = results.runs.filter((r) => r.kind === 'hub');
  // Latency only counts while the cadence is kept: a hub that sends fewer updates is not on time.
  // Latency only counts while the updates keep coming: 95% of the cadence, or of what the bare limit server
  // delivered in the same scenario where the machine itself falls short of the cadence.
  const cadenceShare = (r: RunResult) => r.deliveriesPerSec / r.expectedPerSec;
  const limitShare = (r: RunResult) => {
    const limit = find(results, 'limit', r.clients);
    return limit ? cadenceShare(limit) : undefined;
  };
  const keepsCadence = (r: RunResult) => cadenceShare(r) >= 0.95 * Math.min(1, limitShare(r) ?? 1);
  const cadenceText = (r: RunResult) => {
    const limit = limitShare(r);
    return `${pct(cadenceShare(r))} of the cadence${limit === undefined ? '' : ` (limit server ${pct(limit)})`}`;
  };
  const breaks = hubRuns.find(
    (r) => r.latency[mainType(r)].p99 - INTERVAL[mainType(r)] > 50 || !keepsCadence(r),
  );
  if (hubRuns.length > 0) {
    list.push({
      name: 'Where latency breaks',
      goal: 'first scenario with p99 > interval + 50 ms, or under 95% of the cadence the limit server keeps',
      figure: breaks
        ? `${fmt(breaks.clients)} clients: ${mainType(breaks)} p99 ${ms(breaks.latency[mainType(breaks)].p99)} ms, ${cadenceText(breaks)}`
        : `not within the scenarios run (largest ${fmt(Math.max(...hubRuns.map((r) => r.clients)))})`,
      met: undefined,
    });
  }
  const stretch = hubRuns.find((r) => r.clients >= 10_000 && r.web > 0 && r.tui > 0);
  if (stretch) {
    const ok = stretch.latency.tui.p99 <= 150 && stretch.latency.web.p99 <= 300 && keepsCadence(stretch);
    list.push({
      name: `Stretch: ${fmt(stretch.clients)} clients (${fmt(stretch.web)} web + ${fmt(stretch.tui)} tui)`,
      goal: 'p99 ≤ interval + 50 ms (tui ≤ 150, web ≤ 300), keeping ≥ 95% of the cadence the limit server keeps',
      figure: `tui p99 ${ms(stretch.latency.tui.p99)} ms, web p99 ${ms(stretch.latency.web.p99)} ms, ${cadenceText(stretch)}`,
      met: ok,
    });
  }
  const idle = results.idle.find((r) => r.kind === 'hub');
  if (idle) {
    list.push({
      name: `Memory, idle (${fmt(idle.clients)} clients)`,
      goal: '≤ 16 KB RSS per idle client',
      figure: `${fmt(idle.perClientKB, 1)} KB subscribed, ${fmt(idle.connectedPerClientKB, 1)} KB connected only (RSS ${fmt(idle.baseMB, 0)} → ${fmt(idle.connectedMB, 0)} → ${fmt(idle.endMB, 0)} MB)`,
      met: idle.perClientKB <= 16,
    });
  }
  if (hubRuns.length > 0) {
    const largest = hubRuns.reduce((a, b) => (b.clients > a.clients ? b : a));
    const worst = Math.max(...hubRuns.filter((r) => r.clients >= 1000).map((r) => r.rss.perClientKB));
    const slope = rssSlope(hubRuns);
    list.push({
      name: 'Memory, active',
      goal: '≤ 64 KB RSS per active client',
      figure: `${fmt(largest.rss.perClientKB, 1)} KB at ${fmt(largest.clients)} clients (RSS − base ÷ clients; worst at ≥ 1,000 clients: ${fmt(worst, 1)} KB); marginal, from the RSS of the runs against their client count: ${fmt(slope, 1)} KB per client`,
      met: worst <= 64,
    });
    const base = Math.max(...hubRuns.map((r) => r.rss.baseMB));
    list.push({
      name: 'Memory, base',
      goal: '≤ 100 MB RSS with state and no clients',
      figure: `${fmt(base, 0)} MB (largest of the runs)`,
      met: base <= 100,
    });
  }
  const mix = results.ingest.find((p) => p.phase === 'mix');
  if (mix) {
    const md = results.ingest.find((p) => p.phase === 'market_data');
    list.push({
      name: 'Ingest',
      goal: '≥ 100,000 Redis messages/s parsed and applied on one core (full books trimmed)',
      figure: `realistic mix with full ${results.options.levels}-level books: ${fmt(mix.appliedPerSec)}/s at ${fmt(mix.hubCpuPct)}% CPU (${fmt(mix.perCorePerSec)}/s per core); market_data only: ${fmt(md?.perCorePerSec ?? Number.NaN)}/s per core`,
      met: mix.perCorePerSec >= 100_000,
    });
  }
  const bw = bandwidth(results);
  if (bw.length > 0) {
    const saving = (rows: BandwidthRow[], field: 'hubMsgpack' | 'hubJson') =>
      1 -
      rows.reduce((sum, r) => sum + r[field] * r.weight, 0) /
        rows.reduce((sum, r) => sum + r.naive * r.weight, 0);
    const saved = (r: BandwidthRow) => 1 - r.hubMsgpack / r.naive;
    const worst = bw.reduce((x, y) => (saved(y) < saved(x) ? y : x));
    const best = bw.reduce((x, y) => (saved(y) > saved(x) ? y : x));
    const perType = (['tui', 'web'] as const)
      .map((type) => [type, bw.filter((r) => r.set.startsWith(`${type}|`))] as const)
      .filter(([, rows]) => rows.length > 0);
    list.push({
      name: 'Bandwidth',
      goal: 'diffs + MessagePack ≥ 95% fewer bytes per client than the naive full JSON snapshot',
      figure: `${perType
        .map(
          ([type, rows]) =>
            `${type} sets (weighted by their clients): ${pct(saving(rows, 'hubMsgpack'))} fewer (JSON diffs ${pct(saving(rows, 'hubJson'))})`,
        )
        .join(
          '; ',
        )}; per set from ${savedText(saved(worst))} (${worst.set}) to ${savedText(saved(best))} (${best.set})`,
      met: perType.every(([, rows]) => saving(rows, 'hubMsgpack') >= 0.95),
    });
  }
  return list;
}

/** Least-squares slope of end RSS (KB) against clients over the runs with ≥ 1,000 clients. */
export function rssSlope(runs: RunResult[]): number {
  const points = runs.filter((r) => r.clients >= 1000).map((r) => [r.clients, r.rss.endMB * 1024]);
  if (points.length < 2) return Number.NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / points.length;
  const my = points.reduce((a, [, y]) => a + y, 0) / points.length;
  const num = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const den = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return num / den;
}
