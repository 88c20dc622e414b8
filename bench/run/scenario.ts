/**
 * One fan-out run: C clients on one server (the hub or a baseline), or split over the replicas of `hub-replicas`,
 * under the publisher's traffic, measured.
 */

import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { RedisServer } from '../../scripts/lib/redis-server.ts';
import { emptyClassStats, request, rssBytes, sleep } from '../common.ts';
import { Histogram } from '../histogram.ts';
import type { ClassStats } from '../loadgen.ts';
import { type ClientSpec, defaultWebShare, population, splitAmong } from '../mix.ts';
import { renderConsole } from '../report/console.ts';
import { log, profileDir, symbolList } from './context.ts';
import {
  histogramDelta,
  type Metrics,
  metricSum,
  scrape,
  summarize,
  UsageSampler,
  waitQuiet,
} from './metrics.ts';
import { options } from './options.ts';
import {
  closeLoadgens,
  isHub,
  type Loadgen,
  type ServerProcess,
  startBaseline,
  startHub,
  startLoadgens,
  startPublisher,
  startReplicas,
  stopPublisher,
  stopServer,
} from './processes.ts';
import type { LoadgenStats, RunResult, ServerStats } from './results.ts';

export async function runServer(
  kind: string,
  clients: number,
  redis: RedisServer,
  sizes: Record<string, number>,
): Promise<RunResult> {
  const webShare = options.webShare ?? defaultWebShare(clients);
  const replicated = kind === 'hub-replicas';
  const all = population(clients, webShare, symbolList());
  const specs = replicated ? splitAmong(all, options.replicas) : all;
  const tui = specs.filter((s) => s.type === 'tui').length;
  const label = `${kind}-${clients}`;
  const quiet = await waitQuiet();
  log(
    `  ${label}: starting (${tui} tui + ${clients - tui} web clients${replicated ? ` split over ${options.replicas} replicas` : ''}; machine ${fmtPct(quiet.busyPct)} busy after ${quiet.waitedSeconds.toFixed(0)} s of waiting for quiet)`,
  );
  // One server process, or (hub-replicas) one per replica; `servers[0]` stands for the run in the log lines.
  const servers: ServerProcess[] = replicated
    ? await startReplicas(redis, clients, String(clients))
    : [
        isHub(kind)
          ? await startHub(redis, clients, String(clients), kind)
          : await startBaseline(kind, redis, sizes, String(clients)),
      ];
  const server = servers[0];
  const serverPids = servers.map((s) => s.child.pid!);
  const serverRss = () => serverPids.reduce((sum, pid) => sum + rssBytes(pid), 0);
  /** The names of the server processes in `usage`: `server`, or `replica1`… whose sum is then `server`. */
  const serverNames = replicated ? servers.map((_, i) => `replica${i + 1}`) : ['server'];
  let publisher: ChildProcess | undefined;
  let loadgens: Loadgen[] = [];
  try {
    publisher = await startPublisher(redis);
    await sleep(2000);
    const baseRss = serverRss();
    const connect = await startLoadgens(servers, specs);
    loadgens = connect.loadgens;
    log(
      `  ${label}: ${connect.ready} clients ready in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed)`,
    );
    await sleep(options.warmup * 1000);

    const pids: Record<string, number> = {
      publisher: publisher.pid!,
      redis: redis.pid!,
    };
    serverNames.forEach((name, i) => {
      pids[name] = serverPids[i];
    });
    loadgens.forEach((l, i) => {
      pids[`loadgen${i + 1}`] = l.child.pid!;
    });
    const scrapeAll = () =>
      isHub(kind) ? Promise.all(servers.map((s) => scrape(s.port))) : Promise.resolve([] as Metrics[]);
    const metricsBefore = await scrapeAll();
    const scrapedAt = performance.now();
    if (!isHub(kind)) await request(server.child, { cmd: 'start' }, 'started', 10_000);
    await Promise.all(loadgens.map((l) => request(l.child, { cmd: 'start' }, 'started', 10_000)));
    const sampler = new UsageSampler(pids, serverPids);
    const load = loadavg()[0];
    const windowFrom = Number(process.hrtime.bigint() / 1000n);
    await sleep(options.seconds * 1000);
    if (options.profile) {
      // CLOCK_MONOTONIC µs, the clock of V8's profile timestamps: profile-summary --window keeps these samples.
      const to = Number(process.hrtime.bigint() / 1000n);
      writeFileSync(join(profileDir, `${label}.window.json`), JSON.stringify({ from: windowFrom, to }));
    }
    const stats = await Promise.all(
      loadgens.map((l) => request<LoadgenStats>(l.child, { cmd: 'stop' }, 'stats', 30_000)),
    );
    const { usage, systemBusyPct, seconds } = sampler.finish();
    const metricsAfter = await scrapeAll();
    const scrapeSeconds = (performance.now() - scrapedAt) / 1000;
    const serverStats = isHub(kind)
      ? undefined
      : await request<ServerStats>(server.child, { cmd: 'stop' }, 'stats', 30_000).catch(() => undefined);
    const endRss = Math.max(serverRss(), sampler.maxRss);

    const result = combine(kind, specs, stats, seconds);
    result.ready = connect.ready;
    result.failed = connect.failed;
    result.connectSeconds = connect.ms / 1000;
    result.usage = usage;
    result.systemBusyPct = systemBusyPct;
    const ours = Object.values(usage).reduce((sum, u) => sum + u.cpuPct, 0);
    result.foreignPct = Math.max(0, (systemBusyPct.cpu ?? 0) * cpus().length - ours);
    if (replicated) {
      // The replicas together are the server: CPU summed, and where each ran.
      result.replicas = servers.length;
      usage.server = {
        cpuPct: serverNames.reduce((sum, name) => sum + usage[name].cpuPct, 0),
        cores: serverNames.map((name) => `${name}: ${usage[name].cores}`).join('; '),
      };
    }
    result.loadavg = load;
    result.serverCpuUsPerDelivery =
      ((usage.server.cpuPct / 100) * seconds * 1e6) / Math.max(1, result.deliveries);
    result.rss = {
      baseMB: baseRss / 1048576,
      endMB: endRss / 1048576,
      perClientKB: (endRss - baseRss) / 1024 / Math.max(1, connect.ready),
    };
    if (isHub(kind)) {
      const delta = (after: Metrics, before: Metrics, name: string, filter = '') =>
        metricSum(after, name, filter) - metricSum(before, name, filter);
      const summed = (name: string, filter = '') =>
        metricsAfter.reduce((sum, after, i) => sum + delta(after, metricsBefore[i], name, filter), 0);
      // The replicas' event-loop delay: the worst of them.
      result.serverLoopP99Ms =
        Math.max(...metricsAfter.map((m) => metricSum(m, 'nodejs_eventloop_lag_p99_seconds'))) * 1000;
      result.hubSentPerSec = summed('dashboard_sent_messages_total') / scrapeSeconds;
      if (replicated) {
        result.replicaSentPerSec = metricsAfter.map(
          (after, i) => delta(after, metricsBefore[i], 'dashboard_sent_messages_total') / scrapeSeconds,
        );
      }
      result.slowConsumerSkips = summed('dashboard_slow_consumer_skips_total');
      const perType: Record<string, { mean: number; p99le: number }> = {};
      result.hubTicksPerSec = {};
      // Broadcast durations of every replica in one histogram (same buckets: the series add up).
      const mergedBefore = mergeMetrics(metricsBefore);
      const mergedAfter = mergeMetrics(metricsAfter);
      for (const type of ['tui', 'web']) {
        const label = `client_type="${type}"`;
        // Ticks per second of one process (the mean over the replicas).
        result.hubTicksPerSec[type] =
          summed('dashboard_broadcast_duration_seconds_count', label) / scrapeSeconds / servers.length;
        perType[type] = histogramDelta(
          mergedBefore,
          mergedAfter,
          'dashboard_broadcast_duration_seconds',
          label,
        );
      }
      const main = perType[result.web > result.tui ? 'web' : 'tui'];
      result.tickMs = { mean: main.mean, p99: main.p99le, max: Number.NaN, perType };
    } else if (serverStats) {
      result.serverLoopP99Ms = serverStats.loopDelayP99Ms;
      const ticks = Histogram.fromJSON(serverStats.tick);
      result.tickMs = { mean: ticks.mean / 1000, p99: ticks.percentile(99) / 1000, max: ticks.max / 1000 };
    }
    log(`  ${label}: ${renderConsole([result])}`);
    return result;
  } finally {
    await closeLoadgens(loadgens);
    if (publisher) await stopPublisher(publisher);
    await Promise.all(
      servers.map((s, i) => stopServer(kind, s.child, replicated ? `${label}-r${i + 1}` : label)),
    );
    if (options.profile && isHub(kind)) await sleep(500);
  }
}

/** Several processes' /metrics as one: every series summed (for counters and histograms, not gauges). */
function mergeMetrics(list: Metrics[]): Metrics {
  const merged: Metrics = new Map();
  for (const metrics of list)
    for (const [series, value] of metrics) merged.set(series, (merged.get(series) ?? 0) + value);
  return merged;
}

function combine(kind: string, specs: ClientSpec[], stats: LoadgenStats[], seconds: number): RunResult {
  const classes: RunResult['classes'] = {};
  const latency = { tui: new Histogram(), web: new Histogram() };
  const tickLatency = { tui: new Histogram(), web: new Histogram() };
  const closes: Record<string, number> = {};
  const samples: Record<string, unknown[]> = {};
  let loadgenLoopP99Ms = 0;
  for (const s of stats) {
    for (const [key, c] of Object.entries(s.classes)) {
      classes[key] ??= { ...emptyClassStats(), meanSize: 0, bytesPerClientPerSec: 0 };
      const into = classes[key];
      for (const field of Object.keys(c) as (keyof ClassStats)[]) into[field] += c[field];
    }
    for (const type of ['tui', 'web'] as const) {
      latency[type].add(s.latency[type]);
      tickLatency[type].add(s.tickLatency[type]);
    }
    for (const [code, n] of Object.entries(s.closes)) closes[code] = (closes[code] ?? 0) + n;
    for (const [key, list] of Object.entries(s.samples)) {
      samples[key] ??= [];
      samples[key].push(...list);
    }
    loadgenLoopP99Ms = Math.max(loadgenLoopP99Ms, s.loopDelayP99Ms);
  }
  let deliveries = 0;
  let bytes = 0;
  let clientsSeen = 0;
  for (const c of Object.values(classes)) {
    c.meanSize = c.msgs > 0 ? c.bytes / c.msgs : 0;
    c.bytesPerClientPerSec = c.clients > 0 ? c.bytes / c.clients / seconds : 0;
    deliveries += c.msgs;
    bytes += c.bytes;
    clientsSeen += c.clients;
  }
  const tui = specs.filter((s) => s.type === 'tui').length;
  const web = specs.length - tui;
  const sum = (field: keyof ClassStats) => Object.values(classes).reduce((a, c) => a + c[field], 0);
  return {
    kind,
    clients: specs.length,
    tui,
    web,
    ready: 0,
    failed: 0,
    connectSeconds: 0,
    seconds,
    deliveries,
    deliveriesPerSec: deliveries / seconds,
    // One update per connected client per interval (the naive server may not have let them all in).
    expectedPerSec: Object.entries(classes).reduce(
      (sum, [key, c]) => sum + c.clients * (key.startsWith('tui|') ? 10 : 4),
      0,
    ),
    bytesPerClientPerSec: bytes / Math.max(1, clientsSeen) / seconds,
    classes,
    latency: { tui: summarize(latency.tui), web: summarize(latency.web) },
    tickLatency: { tui: summarize(tickLatency.tui), web: summarize(tickLatency.web) },
    lost: sum('lost'),
    outOfOrder: sum('outOfOrder'),
    extraSnapshots: sum('extraSnapshots'),
    errors: sum('errors'),
    closes,
    usage: {},
    serverCpuUsPerDelivery: 0,
    rss: { baseMB: 0, endMB: 0, perClientKB: 0 },
    serverLoopP99Ms: Number.NaN,
    loadgenLoopP99Ms,
    tickMs: { mean: Number.NaN, p99: Number.NaN, max: Number.NaN },
    systemBusyPct: {},
    foreignPct: 0,
    loadavg: 0,
    samples: isHub(kind) ? samples : undefined,
  };
}

function fmtPct(n: number): string {
  return `${n.toFixed(0)}%`;
}
