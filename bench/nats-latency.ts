/**
 * Publish→receive latency of order updates from NATS, against the same updates from Redis in the same run
 * (`npm run bench:nats -- [options]`). The hub runs as a process of its own (src/server.ts, auth on) on its own
 * redis-server and nats-server; this process publishes each update, alternately on NATS `orders.updates.<SYMBOL>`
 * and on Redis `orders:<SYMBOL>`, at random moments (so that publications fall anywhere within a cadence tick),
 * and holds one terminal (100 ms) and one web (250 ms) client subscribed to `orders`. A latency is from the
 * publish call to the client's receipt of the diff that carries that order; both clocks are this process's.
 *
 * What to expect: a change waits for its client's next tick, so latencies spread over [0, tick] plus the path's
 * own cost; the target is p99 within one tick plus a few ms.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createSigner } from 'fast-jwt';
import { Redis } from 'ioredis';
import { freePort } from '../scripts/lib/free-port.ts';
import { hubEnv } from '../scripts/lib/hub-env.ts';
import { NatsServer } from '../scripts/lib/nats-server.ts';
import { RedisServer } from '../scripts/lib/redis-server.ts';
import { parseCli } from '../src/cli.ts';
import { DashboardClient, type DiffUpdate, type JsonObject } from '../src/client.ts';
import { sleep } from './common.ts';

const USAGE = `Usage: npm run bench:nats -- [options]   (node bench/nats-latency.ts)
Publish→receive latency of order updates, NATS against Redis, for a terminal (100 ms) and a web (250 ms) client.

Options:
  --updates N      order updates per source (default 400)
  --gap-ms N       mean pause between two publications, randomised ±50% (default 40)
  -h, --help       this text`;

const { values } = parseCli('bench:nats', USAGE, {
  options: {
    updates: { type: 'string', default: '400' },
    'gap-ms': { type: 'string', default: '40' },
  },
});
const updates = Number(values.updates);
const gapMs = Number(values['gap-ms']);
if (!(updates >= 10) || !(gapMs >= 1)) {
  process.stderr.write(`bench:nats: --updates must be at least 10 and --gap-ms at least 1\n${USAGE}\n`);
  process.exit(2);
}

const SOURCES = ['nats', 'redis'] as const;
type Source = (typeof SOURCES)[number];
const CLIENT_TYPES = ['tui', 'web'] as const;
type ClientType = (typeof CLIENT_TYPES)[number];

const root = new URL('..', import.meta.url).pathname;
const secret = 'bench-nats-secret-bench-nats-secret-42';
const secretDir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
writeFileSync(join(secretDir, 'jwt-secret'), secret);
const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: 3_600_000 });

const redisServer = await RedisServer.start();
const natsServer = await NatsServer.start();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const hub: ChildProcess = spawn(process.execPath, [join(root, 'src/server.ts')], {
  env: hubEnv(
    { port, redisUrl: redisServer.url, secretFile: join(secretDir, 'jwt-secret') },
    { DASHBOARD_NATS__URL: natsServer.url },
  ),
  stdio: ['ignore', 'inherit', 'inherit'],
});
const hubExited = once(hub, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;

async function waitForReady(): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      if ((await fetch(`${base}/ready`)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error('the hub did not turn ready within 20 s');
}

/** When each order was published (performance.now()), by order id. */
const publishedAt = new Map<string, number>();
/** Latencies in ms, by source and client type. */
const latencies: Record<Source, Record<ClientType, number[]>> = {
  nats: { tui: [], web: [] },
  redis: { tui: [], web: [] },
};

let exitCode = 0;
try {
  await waitForReady();
  const clients = await Promise.all(
    CLIENT_TYPES.map(async (type) => {
      const client = new DashboardClient(base, {
        type,
        token: sign({ userId: `bench-${type}`, role: 'trader' }),
      });
      await client.connected();
      await client.subscribe(['orders']);
      client.on('diff_update', (message) => {
        const now = performance.now();
        const orders = (message as DiffUpdate).changes.orders as JsonObject | undefined;
        for (const id of Object.keys(orders ?? {})) {
          const at = publishedAt.get(id);
          if (at === undefined) continue;
          latencies[id.startsWith('nats-') ? 'nats' : 'redis'][type].push(now - at);
        }
      });
      return client;
    }),
  );
  const nats = await natsServer.client();
  const redis = new Redis(redisServer.url);

  for (let index = 0; index < updates * SOURCES.length; index++) {
    const source = SOURCES[index % SOURCES.length];
    const id = `${source}-${index}`;
    const order = {
      order_id: id,
      symbol: 'BTCUSDT',
      side: 'BUY',
      type: 'LIMIT',
      state: 'NEW',
      quantity: '0.5',
      price: '50000',
      updated_at: new Date().toISOString(),
    };
    publishedAt.set(id, performance.now());
    if (source === 'nats') {
      nats.publish('orders.updates.BTCUSDT', JSON.stringify({ order, update_type: 'CREATED' }));
    } else {
      void redis.publish('orders:BTCUSDT', JSON.stringify(order));
    }
    await sleep(gapMs * (0.5 + Math.random()));
  }
  // The last updates arrive within a web tick; wait two.
  await sleep(600);
  for (const client of clients) client.close();
  await nats.close();
  redis.disconnect();
} catch (error) {
  process.stderr.write(`bench:nats: ${(error as Error).stack ?? error}\n`);
  exitCode = 1;
} finally {
  hub.kill('SIGTERM');
  const [code, signal] = await hubExited;
  if (code !== 0) {
    process.stderr.write(`bench:nats: the hub exited with ${code ?? signal}, not 0\n`);
    exitCode = 1;
  }
  await natsServer.kill();
  await redisServer.kill();
  rmSync(secretDir, { recursive: true, force: true });
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

if (exitCode === 0) {
  const ticks: Record<ClientType, number> = { tui: 100, web: 250 };
  const rows: string[] = [];
  for (const type of CLIENT_TYPES) {
    const summary: Partial<Record<Source, { p50: number; p99: number }>> = {};
    for (const source of SOURCES) {
      const sorted = latencies[source][type].toSorted((a, b) => a - b);
      if (sorted.length < updates) {
        process.stderr.write(
          `bench:nats: the ${type} client received ${sorted.length} of ${updates} ${source} updates\n`,
        );
        exitCode = 1;
      }
      if (sorted.length === 0) continue;
      const p50 = percentile(sorted, 50);
      const p99 = percentile(sorted, 99);
      summary[source] = { p50, p99 };
      rows.push(
        `${type.padEnd(4)} ${source.padEnd(6)} ${String(sorted.length).padStart(5)} ${p50.toFixed(1).padStart(8)} ${percentile(sorted, 90).toFixed(1).padStart(8)} ${p99.toFixed(1).padStart(8)} ${sorted.at(-1)!.toFixed(1).padStart(8)} ${(p99 - ticks[type]).toFixed(1).padStart(11)}`,
      );
    }
    if (summary.nats && summary.redis) {
      rows.push(
        `${type.padEnd(4)} nats/redis p50 ${(summary.nats.p50 / summary.redis.p50).toFixed(2)}, p99 ${(summary.nats.p99 / summary.redis.p99).toFixed(2)}`,
      );
    }
  }
  process.stdout.write(
    `order updates, publish → client receipt, ms (${updates} per source, mean gap ${gapMs} ms, Node ${process.version})\n` +
      `type source     n      p50      p90      p99      max  p99 - tick\n${rows.join('\n')}\n`,
  );
}
process.exit(exitCode);
