/**
 * The processes of a run: a redis-server of its own, the hub (compiled as deploy.sh ships it) or a baseline server,
 * the publisher and the load generators; started, driven over IPC and stopped.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { cpSync, symlinkSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { hubEnv } from '../../scripts/lib/hub-env.ts';
import { RedisServer } from '../../scripts/lib/redis-server.ts';
import { freePort, request, sleep, spawnPinned, stopChild, waitForMessage } from '../common.ts';
import type { ClientSpec } from '../mix.ts';
import {
  bench,
  benchDir,
  log,
  OTHERS_CPU,
  onCleanup,
  profileDir,
  root,
  SERVER_CPU,
  secret,
  track,
} from './context.ts';
import { options } from './options.ts';

/** A redis-server of the run's own, pinned with the other non-server processes. */
export function startRedis(): Promise<RedisServer> {
  return RedisServer.start((command, args) =>
    track(spawnPinned(command, args, { cpu: OTHERS_CPU, pipeStdout: true })),
  );
}

export interface ServerProcess {
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

/**
 * The hub, or (`hub-whole`) the hub sending every group whole at each tick: the design before spreading, or
 * (`hub-history`) recording history, or (`hub-replicas`) several hub processes on one Redis.
 */
export const isHub = (kind: string) =>
  kind === 'hub' || kind === 'hub-whole' || kind === 'hub-history' || kind === 'hub-replicas';

let historyDatabase: Promise<string> | undefined;
/** A scratch database for the hub-history runs, created once per benchmark run and dropped at its end. */
function historyDatabaseUrl(): Promise<string> {
  historyDatabase ??= (async () => {
    const name = `dashboard_bench_${process.pid}`;
    const admin = postgres(options.postgres, { max: 1, onnotice: () => {} });
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.end();
    onCleanup(async () => {
      const cleanup = postgres(options.postgres, { max: 1, onnotice: () => {} });
      await cleanup.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    });
    const url = new URL(options.postgres);
    url.pathname = `/${name}`;
    return url.toString();
  })();
  return historyDatabase;
}

/** Every hub that did not exit 0 at its SIGTERM (crashed, shutdown failed, or killed after the grace): the bench fails. */
export const hubExitFailures: string[] = [];

/** Stops a server; for the hub, an exit other than 0 at SIGTERM is recorded and reported. */
export async function stopServer(kind: string, child: ChildProcess, label: string): Promise<void> {
  const { code, signal } = await stopChild(child, 8000);
  if (!isHub(kind) || (code === 0 && signal === null)) return;
  const line = `${kind} ${label}: the hub exited with ${signal ? `signal ${signal}` : `code ${code}`} at SIGTERM (expected 0)`;
  hubExitFailures.push(line);
  log(`  FAILED: ${line}`);
}

export async function startHub(
  redis: RedisServer,
  clients: number,
  label: string,
  kind = 'hub',
  cpu = SERVER_CPU,
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
      cpu,
      pipeStdout: true,
      env: hubEnv(
        { port, redisUrl: redis.url, secretFile: join(benchDir, 'jwt-secret') },
        {
          DASHBOARD_WEBSOCKET__MAX_CLIENTS: String(Math.max(20_000, clients * 2)),
          DASHBOARD_WEBSOCKET__CONNECT_RATE_LIMIT__MAX: '10000000',
          ...(kind === 'hub-whole' ? { DASHBOARD_BROADCAST__SEND_PHASES: '1' } : {}),
          ...(kind === 'hub-history' ? { DASHBOARD_HISTORY__DATABASE_URL: await historyDatabaseUrl() } : {}),
        },
      ),
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

export async function startBaseline(
  kind: string,
  redis: RedisServer,
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

export async function startPublisher(redis: RedisServer, max = false): Promise<ChildProcess> {
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

export async function stopPublisher(publisher: ChildProcess): Promise<Record<string, number>> {
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

export interface Loadgen {
  child: ChildProcess;
  clients: number;
}

/**
 * The cores of the replicas, in order: cpu0, cpu2, cpu3…, then cpu1 (the core of Redis, the publisher and the
 * load generators) last, round again if there are more replicas than cores. On this 2-core machine: cpu0, cpu1.
 */
export function replicaCpus(count: number, cores = cpus().length): (number | undefined)[] {
  if (!options.pin) return Array.from({ length: count }, () => undefined);
  const order = [
    0,
    ...Array.from({ length: Math.max(0, cores - 2) }, (_, i) => i + 2),
    ...(cores > 1 ? [1] : []),
  ];
  return Array.from({ length: count }, (_, i) => order[i % order.length]);
}

/**
 * `hub-replicas`: `options.replicas` hubs on one Redis, each on a port of its own, pinned as `replicaCpus` says.
 * Profiles, with --profile, are named `hub-replicas-<label>-r<i>`.
 */
export async function startReplicas(
  redis: RedisServer,
  clients: number,
  label: string,
): Promise<ServerProcess[]> {
  const replicas: ServerProcess[] = [];
  try {
    for (const [i, cpu] of replicaCpus(options.replicas).entries()) {
      replicas.push(await startHub(redis, clients, `${label}-r${i + 1}`, 'hub-replicas', cpu));
    }
  } catch (error) {
    for (const replica of replicas) await stopChild(replica.child);
    throw error;
  }
  return replicas;
}

/** The load generators for `specs`: a client connects to `servers[spec.replica ?? 0]`. */
export async function startLoadgens(
  servers: ServerProcess | ServerProcess[],
  specs: ClientSpec[],
  subscribe = true,
): Promise<{ loadgens: Loadgen[]; ready: number; failed: number; ms: number }> {
  const list = Array.isArray(servers) ? servers : [servers];
  const server = list[0];
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
          urls: list.map((s) => s.url),
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

export async function closeLoadgens(loadgens: Loadgen[]): Promise<void> {
  for (const { child } of loadgens) if (child.connected) child.send({ cmd: 'close' });
  await Promise.all(loadgens.map(({ child }) => stopChild(child, 5000)));
}
