/** Measurement: the hub's /metrics, CPU and RSS of the processes, and waiting for a quiet machine. */
import { cpuSeconds, processor, rssBytes, sleep, systemCpu } from '../common.ts';
import type { Histogram } from '../histogram.ts';
import { options } from './options.ts';
import type { LatencySummary, ProcessUsage } from './results.ts';

export type Metrics = Map<string, number>;

/** /metrics as a map from series (`name{labels}`) to value; empty when the scrape fails. */
export async function scrape(port: number): Promise<Metrics> {
  const metrics: Metrics = new Map();
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      const space = line.lastIndexOf(' ');
      metrics.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
  } catch {
    // the server is gone: no figures
  }
  return metrics;
}

/** Sum of every series of a metric whose labels contain `labelFilter`. */
export function metricSum(metrics: Metrics, name: string, labelFilter = ''): number {
  let sum = 0;
  for (const [series, value] of metrics) {
    if (!series.startsWith(name)) continue;
    const rest = series.slice(name.length);
    if (rest !== '' && rest[0] !== '{') continue;
    if (labelFilter && !rest.includes(labelFilter)) continue;
    sum += value;
  }
  return sum;
}
export function summarize(histogram: Histogram): LatencySummary {
  const ms = (us: number) => us / 1000;
  return {
    count: histogram.count,
    p50: ms(histogram.percentile(50)),
    p99: ms(histogram.percentile(99)),
    p999: ms(histogram.percentile(99.9)),
    max: ms(histogram.max),
    mean: ms(histogram.mean),
  };
}
export class UsageSampler {
  private readonly cores = new Map<string, Map<number, number>>();
  private readonly cpuStart = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();
  private readonly systemStart = systemCpu();
  private readonly pids: Record<string, number>;
  private readonly serverPids: number[];
  /** The largest RSS of the server seen during the window (several processes: the largest of their sum). */
  maxRss = 0;

  constructor(pids: Record<string, number>, serverPids: number | number[]) {
    this.pids = pids;
    this.serverPids = Array.isArray(serverPids) ? serverPids : [serverPids];
    for (const [name, pid] of Object.entries(pids)) this.cpuStart.set(name, cpuSeconds(pid));
    this.timer = setInterval(() => this.sample(), 200);
  }

  private sample(): void {
    for (const [name, pid] of Object.entries(this.pids)) {
      const cpu = processor(pid);
      if (cpu === undefined) continue;
      let map = this.cores.get(name);
      if (!map) {
        map = new Map();
        this.cores.set(name, map);
      }
      map.set(cpu, (map.get(cpu) ?? 0) + 1);
    }
    this.maxRss = Math.max(
      this.maxRss,
      this.serverPids.reduce((sum, pid) => sum + rssBytes(pid), 0),
    );
  }

  finish(): { usage: Record<string, ProcessUsage>; systemBusyPct: Record<string, number>; seconds: number } {
    clearInterval(this.timer);
    const seconds = (performance.now() - this.started) / 1000;
    const usage: Record<string, ProcessUsage> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      const cpu = ((cpuSeconds(pid) - this.cpuStart.get(name)!) / seconds) * 100;
      const map = this.cores.get(name) ?? new Map<number, number>();
      const total = [...map.values()].reduce((a, b) => a + b, 0);
      const cores = [...map]
        .sort((a, b) => a[0] - b[0])
        .map(([core, n]) => `cpu${core} ${Math.round((100 * n) / total)}%`)
        .join(', ');
      usage[name] = { cpuPct: cpu, cores };
    }
    const systemEnd = systemCpu();
    const systemBusyPct: Record<string, number> = {};
    for (const [name, end] of Object.entries(systemEnd)) {
      const start = this.systemStart[name];
      if (!start) continue;
      systemBusyPct[name] = (100 * (end.busy - start.busy)) / Math.max(1, end.total - start.total);
    }
    return { usage, systemBusyPct, seconds };
  }
}

/** Mean and p99 (as the upper bound of its bucket), in ms, of a Prometheus histogram between two scrapes. */
export function histogramDelta(
  before: Metrics,
  after: Metrics,
  name: string,
  label: string,
): { mean: number; p99le: number } {
  const count = metricSum(after, `${name}_count`, label) - metricSum(before, `${name}_count`, label);
  const sum = metricSum(after, `${name}_sum`, label) - metricSum(before, `${name}_sum`, label);
  const buckets: [number, number][] = [];
  for (const [series, value] of after) {
    if (!series.startsWith(`${name}_bucket{`) || !series.includes(label)) continue;
    const le = /le="([^"]+)"/.exec(series)?.[1];
    if (!le) continue;
    buckets.push([le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le), value - (before.get(series) ?? 0)]);
  }
  buckets.sort((a, b) => a[0] - b[0]);
  const p99 = buckets.find(([, cumulative]) => cumulative >= 0.99 * count)?.[0] ?? Number.NaN;
  return { mean: count > 0 ? (sum / count) * 1000 : Number.NaN, p99le: p99 * 1000 };
}

/** Waits (at most --quiet-wait s) until the machine is nearly idle for a second: other jobs share it. */
export async function waitQuiet(): Promise<{ waitedSeconds: number; busyPct: number }> {
  const started = performance.now();
  let busyPct = 0;
  do {
    const before = systemCpu().cpu;
    await sleep(1000);
    const after = systemCpu().cpu;
    busyPct = (100 * (after.busy - before.busy)) / Math.max(1, after.total - before.total);
    if (busyPct < 15) break;
  } while (performance.now() - started < options.quietWait * 1000);
  return { waitedSeconds: (performance.now() - started) / 1000, busyPct };
}
