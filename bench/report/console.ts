/** The console table: one line per run, printed after each run and at the end. */
import type { RunResult } from '../run/results.ts';
import { fmt, kb, mainType, ms, pct } from './units.ts';

export function renderConsole(runs: RunResult[], header = false): string {
  const rows = runs.map((r) => {
    const t = mainType(r);
    return [
      r.kind,
      String(r.clients),
      `${fmt(r.deliveriesPerSec)} (${pct(r.deliveriesPerSec / r.expectedPerSec)})`,
      `${t} ${ms(r.latency[t].p50)}/${ms(r.latency[t].p99)}/${ms(r.latency[t].p999)}/${ms(r.latency[t].max)}`,
      r.web > 0 && r.tui > 0 ? `web ${ms(r.latency.web.p50)}/${ms(r.latency.web.p99)}` : '',
      `tick→rx p99 ${ms(r.tickLatency[t].p99)}`,
      `${kb(r.bytesPerClientPerSec)}/s/client`,
      `cpu ${fmt(r.usage.server?.cpuPct ?? Number.NaN)}% (${fmt(r.serverCpuUsPerDelivery, 1)} µs/deliv)`,
      `rss ${fmt(r.rss.endMB, 0)} MB (${fmt(r.rss.perClientKB, 1)} KB/client)`,
      `loop p99 ${ms(r.serverLoopP99Ms)}`,
      r.hubTicksPerSec
        ? `ticks/s tui ${fmt(r.hubTicksPerSec.tui, 1)} web ${fmt(r.hubTicksPerSec.web, 1)}`
        : '',
      Number.isFinite(r.tickMs.mean) ? `tick ${ms(r.tickMs.mean)} ms mean, p99 ${ms(r.tickMs.p99)}` : '',
      `lost ${r.lost} ooo ${r.outOfOrder} resync ${r.extraSnapshots}`,
      `loadgen cpu ${fmt(loadgenCpu(r))}% loop p99 ${ms(r.loadgenLoopP99Ms)}`,
      `busy cpu0 ${fmt(r.systemBusyPct.cpu0 ?? Number.NaN)}% cpu1 ${fmt(r.systemBusyPct.cpu1 ?? Number.NaN)}%, others ${fmt(r.foreignPct)}%`,
    ].join('  ');
  });
  if (!header) return rows.join('\n');
  return [
    'server clients  deliveries/s (of cadence)  latency p50/p99/p99.9/max ms  tick→receive  bytes  server CPU  RSS  loop  checks  load generator',
    ...rows,
  ].join('\n');
}

export function loadgenCpu(run: RunResult): number {
  return Object.entries(run.usage)
    .filter(([name]) => name.startsWith('loadgen'))
    .reduce((sum, [, u]) => sum + u.cpuPct, 0);
}
