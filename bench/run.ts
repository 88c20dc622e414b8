/**
 * The fan-out benchmark (`npm run bench -- [options]`); see BENCHMARKS.md for what it measures and the figures.
 *
 * Per scenario (C clients), in this one run and on the same traffic: a redis-server of its own (free port), the
 * hub (src/server.js compiled by scripts/build.ts as deploy.sh does, config.yaml with env overrides: auth ON with HS256 tokens, logs at warn), the bench
 * publisher, and load generators holding the C clients; then the same with the two baselines in place of the
 * hub: `limit` (bench/limit-server.ts) and `naive` (bench/naive-server.ts). Then an idle scenario (memory per
 * idle client) and an ingest-only scenario (publisher at max rate; applied messages/s from the hub's
 * dashboard_ingest_messages_total). Writes BENCHMARKS.md (between its markers), bench/results.svg and
 * bench/results.json.
 *
 * Options: --scenarios 100,1000,2000,5000,10000  --seconds 10  --warmup 3  --servers hub,hub-whole,limit,limit-spread,naive
 *   (hub-whole is the hub with broadcast.send_phases=1, every group sent whole each tick, as before spreading;
 *   hub-whole and limit-spread only from --spread-from 5000 clients)  --idle 10000 (0: skip)  --ingest-seconds 6 (per phase;
 *   0: skip)  --symbols 10  --levels 200  --spread 10 (phases per interval of limit-spread)
 *   --web-share auto|0..1  --no-pin  --profile  --quick  --no-write  --quiet-wait 30 (s to wait, before each run,
 *   for the machine to be idle; it is shared)  --hub-node-args '--max-old-space-size=320 --max-semi-space-size=2'
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  cpuSeconds,
  emptyClassStats,
  freePort,
  processor,
  request,
  rssBytes,
  sleep,
  spawnPinned,
  stopChild,
  systemCpu,
  waitForMessage,
} from './common.ts';
import { Histogram } from './histogram.ts';
import type { ClassStats } from './loadgen.ts';
import { type ClientSpec, type ClientType, defaultWebShare, population } from './mix.ts';
import { formatSizes, renderConsole, renderMarkdown, renderSvg } from './report.ts';

const { values } = parseArgs({
  options: {
    scenarios: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string', default: '3' },
    servers: { type: 'string', default: 'hub,hub-whole,limit,limit-spread,naive' },
    'spread-from': { type: 'string', default: '5000' },
    idle: { type: 'string' },
    'ingest-seconds': { type: 'string' },
    symbols: { type: 'string', default: '10' },
    levels: { type: 'string', default: '200' },
    spread: { type: 'string', default: '10' },
    'web-share': { type: 'string', default: 'auto' },
    'no-pin': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    'clients-per-loadgen': { type: 'string', default: '6000' },
    concurrency: { type: 'string', default: '200' },
    // The production command line's flags (systemd/dashboard-server.service).
    'hub-node-args': { type: 'string', default: '--max-old-space-size=320 --max-semi-space-size=2' },
    'quiet-wait': { type: 'string', default: '30' },
    'report-only': { type: 'string' },
  },
});

const quick = values.quick!;
const options = {
  scenarios: (values.scenarios ?? (quick ? '100,1000,2000' : '100,1000,2000,5000,10000'))
    .split(',')
    .map(Number)
    .filter((n) => n > 0),
  seconds: Number(values.seconds ?? (quick ? 6 : 10)),
  warmup: Number(values.warmup),
  servers: orderServers(values.servers!.split(',')),
  idle: Number(values.idle ?? (quick ? 2000 : 10000)),
  ingestSeconds: Number(values['ingest-seconds'] ?? (quick ? 3 : 6)),
  symbols: Number(values.symbols),
  levels: Number(values.levels),
  spread: Number(values.spread),
  spreadFrom: Number(values['spread-from']),
  webShare: values['web-share'] === 'auto' ? undefined : Number(values['web-share']),
  pin: !values['no-pin'],
  profile: values.profile!,
  clientsPerLoadgen: Number(values['clients-per-loadgen']),
  concurrency: Number(values.concurrency),
  hubNodeArgs: values['hub-node-args']!.split(' ').filter(Boolean),
  quietWait: Number(values['quiet-wait']),
};

function orderServers(list: string[]): string[] {
  const known = ['hub', 'hub-whole', 'limit', 'limit-spread', 'naive'];
  for (const name of list) if (!known.includes(name)) throw new Error(`unknown server ${name}`);
  // The hub first: the limit baseline pads its frames to the sizes the hub's diffs had.
  return known.filter((name) => list.includes(name));
}

if (Number(process.versions.node.split('.')[0]) < 24) {
  process.stderr.write(`bench: needs Node 24 (this is ${process.version}); run it with npm run bench\n`);
  process.exit(1);
}

const root = new URL('..', import.meta.url).pathname;
const bench = join(root, 'bench');
const SERVER_CPU = options.pin ? 0 : undefined;
const OTHERS_CPU = options.pin ? 1 : undefined;
const benchDir = mkdtempSync(join(tmpdir(), 'bench-'));
const secret = 'bench-secret-bench-secret-bench-secret-42';
writeFileSync(join(benchDir, 'jwt-secret'), secret);
// Outside the work tree: profiles are large and not for committing.
const profileDir = join(tmpdir(), 'dashboard-server-bench-profiles');
if (options.profile) mkdirSync(profileDir, { recursive: true });
const children = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child, 2000)));
}
process.on('SIGINT', () => {
  void cleanupAll().then(() => process.exit(130));
});

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

// ---- processes ----

interface RedisProcess {
  child: ChildProcess;
  url: string;
}

async function startRedis(): Promise<RedisProcess> {
  const port = await freePort();
  const child = track(
    spawnPinned(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { cpu: OTHERS_CPU, pipeStdout: true },
    ),
  );
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)));
  });
  child.stdout!.resume();
  return { child, url: `redis://127.0.0.1:${port}` };
}

interface ServerProcess {
  kind: string;
  child: ChildProcess;
  port: number;
  url: string;
  logTail: () => string;
}

/**
 * The hub as deploy.sh ships it: the sources compiled to JavaScript by scripts/build.ts (no run-time type
 * stripping), in a copy of the checkout under the bench's temporary folder, sharing its node_modules.
 */
function buildHubRelease(): string {
  const release = join(benchDir, 'release');
  for (const file of ['src', 'plugins', 'routes', 'proto', 'config.yaml', 'package.json']) {
    cpSync(join(root, file), join(release, file), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(release, 'node_modules'));
  const build = spawnSync(process.execPath, ['--no-warnings', join(root, 'scripts/build.ts'), release], {
    encoding: 'utf8',
  });
  if (build.status !== 0) throw new Error(`scripts/build.ts failed: ${build.stderr}`);
  return join(release, 'src/server.js');
}
let hubEntry: string | undefined;

/** The hub, or (`hub-whole`) the hub sending every group whole at each tick: the design before spreading. */
const isHub = (kind: string) => kind === 'hub' || kind === 'hub-whole';

/** Every hub that did not exit 0 at its SIGTERM (crashed, shutdown failed, or killed after the grace): the bench fails. */
const hubExitFailures: string[] = [];

/** Stops a server; for the hub, an exit other than 0 at SIGTERM is recorded and reported. */
async function stopServer(kind: string, child: ChildProcess, label: string): Promise<void> {
  const { code, signal } = await stopChild(child, 8000);
  if (!isHub(kind) || (code === 0 && signal === null)) return;
  const line = `${kind} ${label}: the hub exited with ${signal ? `signal ${signal}` : `code ${code}`} at SIGTERM (expected 0)`;
  hubExitFailures.push(line);
  log(`  FAILED: ${line}`);
}

async function startHub(
  redis: RedisProcess,
  clients: number,
  label: string,
  kind = 'hub',
): Promise<ServerProcess> {
  const port = await freePort();
  const nodeArgs = [...options.hubNodeArgs];
  if (options.profile) {
    nodeArgs.push(
      '--cpu-prof',
      '--cpu-prof-dir',
      profileDir,
      '--cpu-prof-name',
      `${kind}-${label}.cpuprofile`,
    );
  }
  hubEntry ??= buildHubRelease();
  const child = track(
    spawnPinned(process.execPath, [...nodeArgs, hubEntry], {
      cpu: SERVER_CPU,
      pipeStdout: true,
      env: {
        ...process.env,
        DASHBOARD_SERVER__HOST: '127.0.0.1',
        DASHBOARD_SERVER__PORT: String(port),
        DASHBOARD_SERVER__LOG_LEVEL: 'warn',
        DASHBOARD_REDIS__URL: redis.url,
        DASHBOARD_AUTH__JWT__SECRET_FILE: join(benchDir, 'jwt-secret'),
        DASHBOARD_WEBSOCKET__MAX_CLIENTS: String(Math.max(20_000, clients * 2)),
        DASHBOARD_WEBSOCKET__CONNECT_RATE_LIMIT__MAX: '10000000',
        ...(kind === 'hub-whole' ? { DASHBOARD_BROADCAST__SEND_PHASES: '1' } : {}),
      },
    }),
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    output = (output + chunk).slice(-4000);
  });
  const base = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 150; attempt++) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${base}/ready`)).ok) {
        return { kind, child, port, url: `ws://127.0.0.1:${port}/ws`, logTail: () => output };
      }
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  await stopChild(child);
  throw new Error(`the hub did not become ready: ${output}`);
}

async function startBaseline(
  kind: string,
  redis: RedisProcess,
  sizes: Record<string, number>,
  label: string,
): Promise<ServerProcess> {
  const port = await freePort();
  const script = kind === 'naive' ? 'naive-server.ts' : 'limit-server.ts';
  const args = ['--port', String(port), '--redis', redis.url];
  if (kind !== 'naive') {
    args.push('--symbols', String(options.symbols), '--sizes', JSON.stringify(sizes));
    if (kind === 'limit-spread') args.push('--spread', String(options.spread));
  }
  const nodeArgs = options.profile
    ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${kind}-${label}.cpuprofile`]
    : [];
  const child = track(
    spawnPinned(process.execPath, [...nodeArgs, join(bench, script), ...args], {
      cpu: SERVER_CPU,
      ipc: true,
    }),
  );
  await waitForMessage(child, 'ready', 20_000);
  return { kind, child, port, url: `ws://127.0.0.1:${port}/ws`, logTail: () => '' };
}

async function startPublisher(redis: RedisProcess, max = false): Promise<ChildProcess> {
  const args = [
    join(bench, 'publisher.ts'),
    '--redis',
    redis.url,
    '--symbols',
    String(options.symbols),
    '--levels',
    String(options.levels),
    '--seconds',
    '900',
  ];
  if (max) args.push('--max');
  const child = track(spawnPinned(process.execPath, args, { cpu: OTHERS_CPU, ipc: true, pipeStdout: true }));
  child.stdout!.resume();
  await waitForMessage(child, 'ready', 20_000);
  return child;
}

async function stopPublisher(publisher: ChildProcess): Promise<Record<string, number>> {
  try {
    const { published } = await request<{ evt: string; published: Record<string, number> }>(
      publisher,
      { cmd: 'stop' },
      'stopped',
      5000,
    );
    return published;
  } catch {
    return {};
  } finally {
    await stopChild(publisher, 2000);
  }
}

interface Loadgen {
  child: ChildProcess;
  clients: number;
}

async function startLoadgens(
  server: ServerProcess,
  specs: ClientSpec[],
  subscribe = true,
): Promise<{ loadgens: Loadgen[]; ready: number; failed: number; ms: number }> {
  const count = Math.max(1, Math.ceil(specs.length / options.clientsPerLoadgen));
  const loadgens: Loadgen[] = [];
  for (let i = 0; i < count; i++) {
    const child = track(
      spawnPinned(process.execPath, [join(bench, 'loadgen.ts')], { cpu: OTHERS_CPU, ipc: true }),
    );
    await waitForMessage(child, 'ready', 20_000);
    loadgens.push({ child, clients: 0 });
  }
  const started = performance.now();
  const replies = await Promise.all(
    loadgens.map((loadgen, i) => {
      const mine = specs.filter((_, index) => index % count === i);
      loadgen.clients = mine.length;
      return request<{ evt: string; ready: number; failed: number }>(
        loadgen.child,
        {
          cmd: 'connect',
          url: server.url,
          kind: server.kind === 'limit-spread' ? 'limit' : isHub(server.kind) ? 'hub' : server.kind,
          clients: mine,
          secret: isHub(server.kind) ? secret : undefined,
          concurrency: Math.ceil(options.concurrency / count),
          // The naive server blocks its loop for whole seconds per tick at thousands of clients: take those
          // that got in within 20 s rather than wait.
          timeoutMs: server.kind === 'naive' ? 20_000 : 90_000,
          subscribe,
        },
        'connected',
        120_000,
      );
    }),
  );
  return {
    loadgens,
    ready: replies.reduce((sum, r) => sum + r.ready, 0),
    failed: replies.reduce((sum, r) => sum + r.failed, 0),
    ms: performance.now() - started,
  };
}

async function closeLoadgens(loadgens: Loadgen[]): Promise<void> {
  for (const { child } of loadgens) if (child.connected) child.send({ cmd: 'close' });
  await Promise.all(loadgens.map(({ child }) => stopChild(child, 5000)));
}

// ---- measurement ----

type Metrics = Map<string, number>;

/** /metrics as a map from series (`name{labels}`) to value; empty when the scrape fails. */
async function scrape(port: number): Promise<Metrics> {
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
function metricSum(metrics: Metrics, name: string, labelFilter = ''): number {
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

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

function summarize(histogram: Histogram): LatencySummary {
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

export interface ProcessUsage {
  /** CPU (user+sys) over the window, as % of one core. */
  cpuPct: number;
  /** Where it ran: share of samples per CPU (field 39 of /proc/<pid>/stat). */
  cores: string;
}

export interface RunResult {
  kind: string;
  clients: number;
  tui: number;
  web: number;
  ready: number;
  failed: number;
  connectSeconds: number;
  seconds: number;
  deliveries: number;
  deliveriesPerSec: number;
  expectedPerSec: number;
  bytesPerClientPerSec: number;
  classes: Record<string, ClassStats & { meanSize: number; bytesPerClientPerSec: number }>;
  latency: Record<ClientType, LatencySummary>;
  tickLatency: Record<ClientType, LatencySummary>;
  lost: number;
  outOfOrder: number;
  extraSnapshots: number;
  errors: number;
  closes: Record<string, number>;
  usage: Record<string, ProcessUsage>;
  serverCpuUsPerDelivery: number;
  rss: { baseMB: number; endMB: number; perClientKB: number };
  serverLoopP99Ms: number;
  loadgenLoopP99Ms: number;
  tickMs: {
    mean: number;
    p99: number;
    max: number;
    perType?: Record<string, { mean: number; p99le: number }>;
  };
  systemBusyPct: Record<string, number>;
  /** CPU used on the machine by processes that are not part of this run, in % of one core. */
  foreignPct: number;
  loadavg: number;
  hubSentPerSec?: number;
  /** Broadcast ticks per second the hub actually ran, per client type (cadence check). */
  hubTicksPerSec?: Record<string, number>;
  slowConsumerSkips?: number;
  samples?: Record<string, unknown[]>;
}

class UsageSampler {
  private readonly cores = new Map<string, Map<number, number>>();
  private readonly cpuStart = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();
  private readonly systemStart = systemCpu();
  private readonly pids: Record<string, number>;
  private readonly serverPid: number;
  maxRss = 0;

  constructor(pids: Record<string, number>, serverPid: number) {
    this.pids = pids;
    this.serverPid = serverPid;
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
    this.maxRss = Math.max(this.maxRss, rssBytes(this.serverPid));
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
function histogramDelta(
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
async function waitQuiet(): Promise<{ waitedSeconds: number; busyPct: number }> {
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

async function runServer(
  kind: string,
  clients: number,
  redis: RedisProcess,
  sizes: Record<string, number>,
): Promise<RunResult> {
  const webShare = options.webShare ?? defaultWebShare(clients);
  const specs = population(clients, webShare, symbolList());
  const tui = specs.filter((s) => s.type === 'tui').length;
  const label = `${kind}-${clients}`;
  const quiet = await waitQuiet();
  log(
    `  ${label}: starting (${tui} tui + ${clients - tui} web clients; machine ${fmtPct(quiet.busyPct)} busy after ${quiet.waitedSeconds.toFixed(0)} s of waiting for quiet)`,
  );
  const server = isHub(kind)
    ? await startHub(redis, clients, String(clients), kind)
    : await startBaseline(kind, redis, sizes, String(clients));
  let publisher: ChildProcess | undefined;
  let loadgens: Loadgen[] = [];
  try {
    publisher = await startPublisher(redis);
    await sleep(2000);
    const baseRss = rssBytes(server.child.pid!);
    const connect = await startLoadgens(server, specs);
    loadgens = connect.loadgens;
    log(
      `  ${label}: ${connect.ready} clients ready in ${(connect.ms / 1000).toFixed(1)} s (${connect.failed} failed)`,
    );
    await sleep(options.warmup * 1000);

    const pids: Record<string, number> = {
      server: server.child.pid!,
      publisher: publisher.pid!,
      redis: redis.child.pid!,
    };
    loadgens.forEach((l, i) => {
      pids[`loadgen${i + 1}`] = l.child.pid!;
    });
    const metricsBefore: Metrics = isHub(kind) ? await scrape(server.port) : new Map();
    const scrapedAt = performance.now();
    if (!isHub(kind)) await request(server.child, { cmd: 'start' }, 'started', 10_000);
    await Promise.all(loadgens.map((l) => request(l.child, { cmd: 'start' }, 'started', 10_000)));
    const sampler = new UsageSampler(pids, server.child.pid!);
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
    const metricsAfter: Metrics = isHub(kind) ? await scrape(server.port) : new Map();
    const scrapeSeconds = (performance.now() - scrapedAt) / 1000;
    const serverStats = isHub(kind)
      ? undefined
      : await request<ServerStats>(server.child, { cmd: 'stop' }, 'stats', 30_000).catch(() => undefined);
    const endRss = Math.max(rssBytes(server.child.pid!), sampler.maxRss);

    const result = combine(kind, specs, stats, seconds);
    result.ready = connect.ready;
    result.failed = connect.failed;
    result.connectSeconds = connect.ms / 1000;
    result.usage = usage;
    result.systemBusyPct = systemBusyPct;
    const ours = Object.values(usage).reduce((sum, u) => sum + u.cpuPct, 0);
    result.foreignPct = Math.max(0, (systemBusyPct.cpu ?? 0) * cpus().length - ours);
    result.loadavg = load;
    result.serverCpuUsPerDelivery =
      ((usage.server.cpuPct / 100) * seconds * 1e6) / Math.max(1, result.deliveries);
    result.rss = {
      baseMB: baseRss / 1048576,
      endMB: endRss / 1048576,
      perClientKB: (endRss - baseRss) / 1024 / Math.max(1, connect.ready),
    };
    if (isHub(kind)) {
      result.serverLoopP99Ms = metricSum(metricsAfter, 'nodejs_eventloop_lag_p99_seconds') * 1000;
      const sent =
        metricSum(metricsAfter, 'dashboard_sent_messages_total') -
        metricSum(metricsBefore, 'dashboard_sent_messages_total');
      result.hubSentPerSec = sent / scrapeSeconds;
      result.slowConsumerSkips =
        metricSum(metricsAfter, 'dashboard_slow_consumer_skips_total') -
        metricSum(metricsBefore, 'dashboard_slow_consumer_skips_total');
      const perType: Record<string, { mean: number; p99le: number }> = {};
      result.hubTicksPerSec = {};
      for (const type of ['tui', 'web']) {
        const label = `client_type="${type}"`;
        result.hubTicksPerSec[type] =
          (metricSum(metricsAfter, 'dashboard_broadcast_duration_seconds_count', label) -
            metricSum(metricsBefore, 'dashboard_broadcast_duration_seconds_count', label)) /
          scrapeSeconds;
        perType[type] = histogramDelta(
          metricsBefore,
          metricsAfter,
          'dashboard_broadcast_duration_seconds',
          `client_type="${type}"`,
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
    await stopServer(kind, server.child, label);
    if (options.profile && isHub(kind)) await sleep(500);
  }
}

interface LoadgenStats {
  evt: string;
  classes: Record<string, ClassStats>;
  latency: Record<ClientType, ReturnType<Histogram['toJSON']>>;
  tickLatency: Record<ClientType, ReturnType<Histogram['toJSON']>>;
  closes: Record<string, number>;
  open: number;
  loopDelayP99Ms: number;
  samples: Record<string, unknown[]>;
}

interface ServerStats {
  evt: string;
  loopDelayP99Ms: number;
  tick: ReturnType<Histogram['toJSON']>;
  sentFrames: number;
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

function writeOutputs(results: BenchResults): void {
  writeFileSync(join(bench, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(bench, 'results.svg'), renderSvg(results));
  const path = join(root, 'BENCHMARKS.md');
  let existing = '';
  try {
    existing = readFileSync(path, 'utf8');
  } catch {
    // first run
  }
  writeFileSync(path, renderMarkdown(results, existing));
  // The generated files are committed: give them the repository's formatting, so `npm run lint` stays green.
  const biome = join(root, 'node_modules/.bin/biome');
  const formatted = spawnSync(
    biome,
    ['check', '--write', path, join(bench, 'results.svg'), join(bench, 'results.json')],
    { encoding: 'utf8' },
  );
  if (formatted.status !== 0)
    log(`biome check of the generated files failed:\n${formatted.stdout}${formatted.stderr}`);
  log(`wrote BENCHMARKS.md, bench/results.svg, bench/results.json`);
}

function symbolList(): string[] {
  return Array.from({ length: options.symbols }, (_, i) => `SYM${i}USDT`);
}

// ---- idle and ingest scenarios ----

export interface IdleResult {
  kind: string;
  clients: number;
  ready: number;
  baseMB: number;
  /** RSS with every client connected but not subscribed, then subscribed (snapshot sent, no traffic). */
  connectedMB: number;
  endMB: number;
  perClientKB: number;
  connectedPerClientKB: number;
  /** JS heap used (hub only, from /metrics): before, connected, subscribed. */
  heapMB?: [number, number, number];
  cores: string;
}

async function runIdle(kind: string, clients: number): Promise<IdleResult> {
  await waitQuiet();
  const redis = await startRedis();
  const server =
    kind === 'hub'
      ? await startHub(redis, clients, `idle-${clients}`)
      : await startBaseline(kind, redis, {}, `idle-${clients}`);
  let loadgens: Loadgen[] = [];
  const heap = async () =>
    kind === 'hub'
      ? metricSum(await scrape(server.port), 'nodejs_heap_size_used_bytes') / 1048576
      : Number.NaN;
  try {
    // A state to subscribe to, then no more traffic: the clients are connected, then subscribed, and idle.
    const publisher = await startPublisher(redis);
    await sleep(1500);
    await stopPublisher(publisher);
    await sleep(1000);
    const base = rssBytes(server.child.pid!);
    const heapBase = await heap();
    const specs = population(clients, options.webShare ?? defaultWebShare(clients), symbolList(), 0);
    const connect = await startLoadgens(server, specs, false);
    loadgens = connect.loadgens;
    await sleep(4000);
    const connected = rssBytes(server.child.pid!);
    const heapConnected = await heap();
    await Promise.all(loadgens.map((l) => request(l.child, { cmd: 'subscribe' }, 'subscribed', 90_000)));
    await sleep(4000);
    const sampler = new UsageSampler({ server: server.child.pid! }, server.child.pid!);
    await sleep(1000);
    const { usage } = sampler.finish();
    const end = rssBytes(server.child.pid!);
    const heapEnd = await heap();
    const ready = Math.max(1, connect.ready);
    const result: IdleResult = {
      kind,
      clients,
      ready: connect.ready,
      baseMB: base / 1048576,
      connectedMB: connected / 1048576,
      endMB: end / 1048576,
      perClientKB: (end - base) / 1024 / ready,
      connectedPerClientKB: (connected - base) / 1024 / ready,
      heapMB: kind === 'hub' ? [heapBase, heapConnected, heapEnd] : undefined,
      cores: usage.server.cores,
    };
    log(
      `  idle ${kind}: ${connect.ready} clients, RSS ${result.baseMB.toFixed(1)} → ${result.connectedMB.toFixed(1)} (connected) → ${result.endMB.toFixed(1)} MB (subscribed): ${result.connectedPerClientKB.toFixed(1)} / ${result.perClientKB.toFixed(1)} KB per idle client` +
        (result.heapMB ? `; heap ${result.heapMB.map((h) => h.toFixed(1)).join(' → ')} MB` : ''),
    );
    return result;
  } finally {
    await closeLoadgens(loadgens);
    await stopServer(kind, server.child, 'idle');
    await stopChild(redis.child, 2000);
  }
}

export interface IngestPhase {
  phase: string;
  appliedPerSec: number;
  invalid: number;
  hubCpuPct: number;
  publisherCpuPct: number;
  redisCpuPct: number;
  perCorePerSec: number;
  cores: string;
  byTopic: Record<string, number>;
}

async function runIngest(): Promise<IngestPhase[]> {
  await waitQuiet();
  const redis = await startRedis();
  const hub = await startHub(redis, 0, 'ingest');
  const results: IngestPhase[] = [];
  let publisher: ChildProcess | undefined;
  try {
    publisher = await startPublisher(redis, true);
    for (const phase of ['mix', 'market_data', 'orderbook', 'trades']) {
      publisher.send({ phase });
      await sleep(1000);
      const before = await scrape(hub.port);
      const sampler = new UsageSampler(
        { server: hub.child.pid!, publisher: publisher.pid!, redis: redis.child.pid! },
        hub.child.pid!,
      );
      await sleep(options.ingestSeconds * 1000);
      const after = await scrape(hub.port);
      const { usage, seconds } = sampler.finish();
      const byTopic: Record<string, number> = {};
      for (const topic of ['market_data', 'orderbook', 'trades']) {
        const label = `topic="${topic}"`;
        byTopic[topic] =
          (metricSum(after, 'dashboard_ingest_messages_total', label) -
            metricSum(before, 'dashboard_ingest_messages_total', label)) /
          seconds;
      }
      const applied =
        (metricSum(after, 'dashboard_ingest_messages_total') -
          metricSum(before, 'dashboard_ingest_messages_total')) /
        seconds;
      const result: IngestPhase = {
        phase,
        appliedPerSec: applied,
        invalid:
          metricSum(after, 'dashboard_ingest_invalid_total') -
          metricSum(before, 'dashboard_ingest_invalid_total'),
        hubCpuPct: usage.server.cpuPct,
        publisherCpuPct: usage.publisher.cpuPct,
        redisCpuPct: usage.redis.cpuPct,
        perCorePerSec: applied / Math.max(0.01, usage.server.cpuPct / 100),
        cores: usage.server.cores,
        byTopic,
      };
      results.push(result);
      log(
        `  ingest ${phase}: ${Math.round(applied).toLocaleString('en-US')} messages/s applied, hub CPU ${result.hubCpuPct.toFixed(0)}% (${Math.round(result.perCorePerSec).toLocaleString('en-US')}/s per core), publisher ${result.publisherCpuPct.toFixed(0)}%, redis ${result.redisCpuPct.toFixed(0)}%, invalid ${result.invalid}`,
      );
    }
    publisher.send({ phase: 'idle' });
  } finally {
    if (publisher) await stopPublisher(publisher);
    await stopServer('hub', hub.child, 'ingest');
    await stopChild(redis.child, 2000);
  }
  return results;
}

// ---- main ----

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  machine: { cpus: number; model: string; node: string; pinned: boolean; loadavgStart: number[] };
  options: typeof options;
  runs: RunResult[];
  idle: IdleResult[];
  ingest: IngestPhase[];
  formats: ReturnType<typeof formatSizes>;
  command: string;
}

if (values['report-only']) {
  // Renders BENCHMARKS.md and the SVG again from a saved results.json, without running anything.
  const saved = JSON.parse(readFileSync(values['report-only'], 'utf8')) as BenchResults;
  saved.command = saved.command.replace(/ --$/, '');
  for (const run of saved.runs) {
    run.expectedPerSec = Object.entries(run.classes).reduce(
      (sum, [key, c]) => sum + c.clients * (key.startsWith('tui|') ? 10 : 4),
      0,
    );
  }
  writeOutputs(saved);
  process.exit(0);
}

const startedAt = new Date();
const results: BenchResults = {
  startedAt: startedAt.toISOString(),
  finishedAt: '',
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    pinned: options.pin,
    loadavgStart: loadavg(),
  },
  options,
  runs: [],
  idle: [],
  ingest: [],
  formats: [],
  command: process.argv.length > 2 ? `npm run bench -- ${process.argv.slice(2).join(' ')}` : 'npm run bench',
};

log(
  `bench: scenarios ${options.scenarios.join(', ')} clients × ${options.servers.join(', ')}; ${options.seconds} s windows; ${options.symbols} symbols; ` +
    (options.pin ? 'server pinned to cpu0, redis/publisher/load generators to cpu1' : 'no CPU pinning') +
    `; hub auth ON (HS256 tokens); Node ${process.version}`,
);
try {
  for (const clients of options.scenarios) {
    log(`scenario ${clients} clients`);
    const redis = await startRedis();
    try {
      let sizes: Record<string, number> = {};
      for (const kind of options.servers) {
        if ((kind === 'limit-spread' || kind === 'hub-whole') && clients < options.spreadFrom) continue;
        const result = await runServer(kind, clients, redis, sizes);
        results.runs.push(result);
        if (kind === 'hub') {
          sizes = Object.fromEntries(
            Object.entries(result.classes).map(([key, c]) => [key, Math.round(c.meanSize)]),
          );
        }
      }
    } finally {
      await stopChild(redis.child, 2000);
    }
  }
  if (options.idle > 0) {
    log(`idle scenario: ${options.idle} clients`);
    for (const kind of ['hub', 'limit']) results.idle.push(await runIdle(kind, options.idle));
  }
  if (options.ingestSeconds > 0) {
    log('ingest scenario: publisher at max rate, no clients');
    results.ingest = await runIngest();
  }
} finally {
  await cleanupAll();
}
results.finishedAt = new Date().toISOString();
results.formats = formatSizes(results.runs);
for (const run of results.runs) delete run.samples;

log('');
log(renderConsole(results.runs, true));
if (hubExitFailures.length > 0) {
  for (const line of hubExitFailures) log(`bench FAILED: ${line}`);
  log('bench FAILED: results not written');
  process.exit(1);
}
if (!values['no-write']) writeOutputs(results);
if (options.profile) {
  log(`CPU profiles of the hub: ${profileDir} (summarize with: node bench/profile-summary.ts FILE)`);
}
process.exit(0);
