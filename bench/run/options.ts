/** The benchmark's command line: its usage, the parsed options and the defaults --quick changes. */
import { parseCli, usageError } from '../../src/cli.ts';

/** `npm run bench -- --help` */
const USAGE = `Usage: npm run bench -- [options]   (node bench/run.ts)
The fan-out benchmark: per scenario, the hub and the baselines (limit, naive) under the same publisher traffic
and load generators; then an idle and an ingest scenario. Writes BENCHMARKS.md (between its markers),
bench/results.svg and bench/results.json. About 10 minutes; see BENCHMARKS.md.

Options:
  --scenarios LIST          clients per scenario (default 100,1000,2000,5000,10000; --quick 100,1000,2000;
                            --replicas-scenario 2000,4000,6000)
  --seconds N               measurement window per run (default 10; --quick 6; --replicas-scenario 20)
  --warmup N                seconds between connecting and measuring (default 3)
  --servers LIST            of hub,hub-whole,hub-history,hub-replicas,limit,limit-spread,naive (default all but
                            hub-history and hub-replicas); hub-whole is the hub with broadcast.send_phases=1 (every
                            group sent whole each tick), hub-history the hub recording history to a scratch
                            PostgreSQL database (--postgres), hub-replicas --replicas hub processes on one Redis, the
                            clients split evenly between them, pinned to cpu0, cpu2, cpu3…, and cpu1 (the load
                            generators' core) last
  --replicas N              hub processes of hub-replicas (default 2)
  --replicas-scenario       the replicas scenario (issue 17, npm run bench:replicas): hub against hub-replicas
                            at 2,000, 4,000 and 6,000 tui clients, 20 s windows, no idle or ingest scenario,
                            --quiet-wait 120; writes its own section of BENCHMARKS.md and bench/replicas.json
                            (the main section is left alone)
  --postgres URL            PostgreSQL to create hub-history's scratch database on (default
                            postgres://postgres@127.0.0.1:5432/postgres)
  --spread-from N           run hub-whole and limit-spread from N clients (default 5000)
  --spread N                phases per interval of limit-spread (default 10)
  --idle N                  clients of the idle scenario, 0 to skip (default 10000; --quick 2000)
  --ingest-seconds N        seconds per ingest phase, 0 to skip (default 6; --quick 3)
  --symbols N               symbols published (default 10)
  --levels N                order book levels per side (default 200)
  --web-share auto|0..1     share of web clients (default auto: 0 up to 5,000 clients, 0.8 beyond; 0 with
                            --replicas-scenario)
  --clients-per-loadgen N   clients per load generator process (default 6000)
  --concurrency N           connections opened at once (default 200)
  --hub-node-args ARGS      the hub's Node flags (default '--max-old-space-size=320 --max-semi-space-size=2')
  --quiet-wait N            seconds to wait, before each run, for the shared machine to be idle (default 30;
                            --replicas-scenario 120)
  --no-pin                  do not pin the server to cpu0 and the others to cpu1
  --profile                 CPU profiles of the servers (summarize with bench/profile-summary.ts)
  --quick                   fewer and shorter scenarios
  --no-write                print the results only
  --report-only FILE        render BENCHMARKS.md and the chart again from a saved results.json, run nothing
  -h, --help                this help`;

export const { values } = parseCli('bench', USAGE, {
  options: {
    scenarios: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string', default: '3' },
    servers: { type: 'string' },
    replicas: { type: 'string', default: '2' },
    'replicas-scenario': { type: 'boolean', default: false },
    'spread-from': { type: 'string', default: '5000' },
    postgres: { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
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
    'quiet-wait': { type: 'string' },
    'report-only': { type: 'string' },
  },
});

const quick = values.quick!;
/** The replicas scenario's defaults (issue 17); options given on the command line still win. */
const replicasScenario = values['replicas-scenario']!;
export const options = {
  scenarios: (
    values.scenarios ??
    (replicasScenario ? '2000,4000,6000' : quick ? '100,1000,2000' : '100,1000,2000,5000,10000')
  )
    .split(',')
    .map(Number)
    .filter((n) => n > 0),
  seconds: Number(values.seconds ?? (replicasScenario ? 20 : quick ? 6 : 10)),
  warmup: Number(values.warmup),
  servers: orderServers(
    (
      values.servers ?? (replicasScenario ? 'hub,hub-replicas' : 'hub,hub-whole,limit,limit-spread,naive')
    ).split(','),
  ),
  replicas: Number(values.replicas),
  replicasScenario,
  idle: Number(values.idle ?? (replicasScenario ? 0 : quick ? 2000 : 10000)),
  ingestSeconds: Number(values['ingest-seconds'] ?? (replicasScenario ? 0 : quick ? 3 : 6)),
  symbols: Number(values.symbols),
  levels: Number(values.levels),
  spread: Number(values.spread),
  spreadFrom: Number(values['spread-from']),
  // The replicas scenario: tui clients only, at every size (the auto mix turns web beyond 5,000).
  webShare: values['web-share'] === 'auto' ? (replicasScenario ? 0 : undefined) : Number(values['web-share']),
  pin: !values['no-pin'],
  profile: values.profile!,
  clientsPerLoadgen: Number(values['clients-per-loadgen']),
  concurrency: Number(values.concurrency),
  hubNodeArgs: values['hub-node-args']!.split(' ').filter(Boolean),
  quietWait: Number(values['quiet-wait'] ?? (replicasScenario ? 120 : 30)),
  postgres: values.postgres!,
};

if (!Number.isInteger(options.replicas) || options.replicas < 1)
  usageError('bench', `--replicas must be a whole number ≥ 1, got ${values.replicas}`);

function orderServers(list: string[]): string[] {
  const known = ['hub', 'hub-whole', 'hub-history', 'hub-replicas', 'limit', 'limit-spread', 'naive'];
  for (const name of list)
    if (!known.includes(name)) usageError('bench', `unknown server ${name} in --servers`);
  // The hub first: the limit baseline pads its frames to the sizes the hub's diffs had.
  return known.filter((name) => list.includes(name));
}
if (Number(process.versions.node.split('.')[0]) < 24) {
  process.stderr.write(`bench: needs Node 24 (this is ${process.version}); run it with npm run bench\n`);
  process.exit(1);
}
