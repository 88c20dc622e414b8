/**
 * The fan-out benchmark (`npm run bench -- [options]`, `--help` for them); see BENCHMARKS.md for what it measures
 * and the figures.
 *
 * Per scenario (C clients), in this one run and on the same traffic: a redis-server of its own (free port), the
 * hub (src/server.js compiled by scripts/build.ts as deploy.sh does, config.yaml with env overrides: auth ON with
 * HS256 tokens, logs at warn), the bench publisher, and load generators holding the C clients; then the same with
 * the two baselines in place of the hub: `limit` (bench/limit-server.ts) and `naive` (bench/naive-server.ts). Then
 * an idle scenario (memory per idle client) and an ingest-only scenario (publisher at max rate; applied messages/s
 * from the hub's dashboard_ingest_messages_total). Writes BENCHMARKS.md (between its markers), bench/results.svg
 * and bench/results.json.
 *
 * `--servers …,hub-replicas` adds several hub processes on the same Redis, the clients split between them;
 * `--replicas-scenario` (`npm run bench:replicas`, issue 17) runs just hub and hub-replicas and writes its own
 * section of BENCHMARKS.md and bench/replicas.json.
 *
 * The parts, one job each, are in bench/run/ (options, context, processes, metrics, scenario, idle, ingest,
 * results, outputs) and bench/report/ (console table, targets, BENCHMARKS.md, SVG chart).
 */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { renderConsole } from './report/console.ts';
import { formatSizes } from './report/format-sizes.ts';
import { renderReplicasConsole } from './report/replicas.ts';
import { cleanupAll, log, profileDir } from './run/context.ts';
import { runIdle } from './run/idle.ts';
import { runIngest } from './run/ingest.ts';
import { options, values } from './run/options.ts';
import { writeOutputs } from './run/outputs.ts';
import { hubExitFailures, replicaCpus, startRedis } from './run/processes.ts';
import type { BenchResults } from './run/results.ts';
import { runServer } from './run/scenario.ts';

/** How this run was started, as the npm script and its arguments. */
function commandLine(): string {
  const args = process.argv.slice(2);
  if (args[0] === '--replicas-scenario') {
    const rest = args.slice(1);
    return `npm run bench:replicas${rest.length > 0 ? ` -- ${rest.join(' ')}` : ''}`;
  }
  return args.length > 0 ? `npm run bench -- ${args.join(' ')}` : 'npm run bench';
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
  command: commandLine(),
};

log(
  `bench: scenarios ${options.scenarios.join(', ')} clients × ${options.servers.join(', ')}; ${options.seconds} s windows; ${options.symbols} symbols; ` +
    (options.pin
      ? `server pinned to cpu0, redis/publisher/load generators to cpu1${
          options.servers.includes('hub-replicas')
            ? `; hub-replicas: ${options.replicas} hubs on ${replicaCpus(options.replicas)
                .map((cpu) => `cpu${cpu}`)
                .join(', ')}`
            : ''
        }`
      : 'no CPU pinning') +
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
      await redis.kill();
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
const replicas = renderReplicasConsole(results);
if (replicas) log(`\n${replicas}`);
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
