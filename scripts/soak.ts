/**
 * Soak: the hub as a separate process under realistic traffic for N minutes, with a few hundred clients of
 * which some stall and some reconnect. Prints RSS, event-loop delay, latency, resyncs and disconnect codes
 * once a minute, and fails (exit 1) on a memory leak trend or a lost update.
 *   npm run soak -- --minutes 10 [--clients 300]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSigner } from 'fast-jwt';
import WebSocket from 'ws';
import { parseCli } from '../src/cli.ts';
import { DashboardClient, type DiffUpdate, type JsonObject } from '../src/client.ts';
import { freePort } from './lib/free-port.ts';
import { hubEnv } from './lib/hub-env.ts';
import { RedisServer } from './lib/redis-server.ts';

const USAGE = `Usage: npm run soak -- [options]   (node scripts/soak.ts)
Runs the hub as its own process against its own Redis, a publisher and a few hundred clients; prints RSS,
event-loop delay, latency, resyncs and close codes once a minute; exits 1 on a memory leak trend or a lost update.

Options:
  --minutes N        how long to run (default 10)
  --clients N        clients held (default 300)
  -h, --help         this help`;

const { values } = parseCli('soak', USAGE, {
  options: { minutes: { type: 'string', default: '10' }, clients: { type: 'string', default: '300' } },
});
const minutes = Number(values.minutes);
const clientCount = Number(values.clients);
const root = new URL('..', import.meta.url).pathname;

const secret = 'soak-secret-soak-secret-soak-secret-42';
const secretDir = mkdtempSync(join(tmpdir(), 'soak-'));
writeFileSync(join(secretDir, 'jwt-secret'), secret);
const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: (minutes + 10) * 60_000 });

const redis = await RedisServer.start();
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const hub = spawn(process.execPath, [join(root, 'src/server.ts')], {
  env: hubEnv(
    { port, redisUrl: redis.url, secretFile: join(secretDir, 'jwt-secret') },
    { DASHBOARD_WEBSOCKET__CONNECT_RATE_LIMIT__MAX: '100000', DASHBOARD_WEBSOCKET__MAX_LAG: '5s' },
  ),
  stdio: ['ignore', 'inherit', 'inherit'],
});
// How the hub ended: it must exit 0 at the SIGTERM that ends the soak, never before.
const hubExited = once(hub, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
await waitForReady();

const adminToken = sign({ userId: 'soak-admin', role: 'admin' });
const SUBSCRIPTION_SETS = [
  ['market_data', 'orderbook', 'trades', 'orders', 'positions', 'account', 'system'],
  ['market_data', 'orders', 'account'],
  ['market_data:SYM0USDT', 'orderbook:SYM0USDT', 'trades:SYM0USDT'],
  ['orders', 'positions'],
];

interface Tracked {
  client: DashboardClient;
  subscriptions: string[];
  latencies: number[];
}
const healthy: Tracked[] = [];
const closeCodes: Record<string, number> = {};
let reconnects = 0;

async function connectHealthy(index: number): Promise<Tracked> {
  const subscriptions = SUBSCRIPTION_SETS[index % SUBSCRIPTION_SETS.length];
  const client = new DashboardClient(base, {
    type: index % 3 === 0 ? 'web' : 'tui',
    format: index % 2 ? 'msgpack' : 'json',
    token: sign({ userId: `soak-${index}`, role: 'trader' }),
  });
  await client.connected();
  await client.subscribe(subscriptions);
  const tracked: Tracked = { client, subscriptions, latencies: [] };
  client.on('diff_update', (message) => {
    for (const value of Object.values(((message as DiffUpdate).changes.market_data as JsonObject) ?? {})) {
      const sentAt = (value as JsonObject | null)?.sent_at;
      if (typeof sentAt === 'number') tracked.latencies.push(Date.now() - sentAt);
    }
  });
  void client.closed().then(({ code }) => {
    closeCodes[code] = (closeCodes[code] ?? 0) + 1;
  });
  return tracked;
}

/** A client that stops reading for longer than max_lag now and then: expect 4008, then it reconnects. */
function stallingClient(index: number): void {
  const socket = new WebSocket(`${base.replace('http', 'ws')}/ws?type=tui`, {
    headers: { authorization: `Bearer ${sign({ userId: `stall-${index}`, role: 'trader' })}` },
  });
  socket.on('open', () => {
    socket.send(JSON.stringify({ action: 'subscribe', subscriptions: ['market_data', 'orderbook'] }));
    const tcp = (socket as unknown as { _socket: Socket })._socket;
    setTimeout(() => tcp.pause(), 5000 + Math.random() * 20_000);
    setTimeout(() => tcp.resume(), 20_000 + Math.random() * 20_000);
  });
  socket.on('error', () => {});
  socket.on('close', (code) => {
    closeCodes[code] = (closeCodes[code] ?? 0) + 1;
    if (running) setTimeout(() => stallingClient(index), 1000);
  });
}

/** A client that drops its connection every ~30 s and comes back with a fresh snapshot. */
function reconnectingClient(index: number): void {
  void connectHealthy(1000 + index).then((tracked) => {
    setTimeout(
      () => {
        tracked.client.close();
        reconnects++;
        if (running) reconnectingClient(index);
      },
      20_000 + Math.random() * 20_000,
    );
  });
}

let running = true;
const stalling = Math.max(1, Math.floor(clientCount * 0.05));
const reconnecting = Math.max(1, Math.floor(clientCount * 0.05));
for (let i = 0; i < clientCount - stalling - reconnecting; i++) healthy.push(await connectHealthy(i));
for (let i = 0; i < stalling; i++) stallingClient(i);
for (let i = 0; i < reconnecting; i++) reconnectingClient(i);

const publisher = spawn(
  process.execPath,
  [join(root, 'scripts/publisher.ts'), '--redis', redis.url, '--seconds', String(minutes * 60)],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
let publisherReport = '';
publisher.stdout!.on('data', (chunk: Buffer) => {
  publisherReport += chunk;
});

const rssSamples: number[] = [];
process.stdout.write(
  `soak: ${minutes} min, ${clientCount} clients (${stalling} stalling, ${reconnecting} reconnecting), hub pid ${hub.pid}\n`,
);
process.stdout.write(
  'minute  rss_MB  loop_p99_ms  latency_p50_ms  latency_p99_ms  resyncs  sequence  close_codes\n',
);
for (let minute = 1; minute <= minutes; minute++) {
  await new Promise((resolve) => setTimeout(resolve, 60_000));
  const rss = hubRss();
  rssSamples.push(rss);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const loopP99 = Number(/^nodejs_eventloop_lag_p99_seconds (\S+)/m.exec(metrics)?.[1] ?? Number.NaN) * 1000;
  const sequence = Number(/^dashboard_state_sequence (\S+)/m.exec(metrics)?.[1]);
  const latencies = healthy.flatMap((t) => t.latencies.splice(0)).sort((a, b) => a - b);
  const at = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  const resyncs = healthy.reduce((sum, t) => sum + t.client.resyncs, 0);
  process.stdout.write(
    `${String(minute).padStart(6)}  ${(rss / 1024 / 1024).toFixed(1).padStart(6)}  ${loopP99.toFixed(1).padStart(11)}  ${String(at(0.5)).padStart(14)}  ${String(at(0.99)).padStart(14)}  ${String(resyncs).padStart(7)}  ${String(sequence).padStart(8)}  ${JSON.stringify(closeCodes)}\n`,
  );
}

running = false;
await once(publisher, 'exit');
// Quiet now: after a few broadcast ticks every healthy client must hold exactly the server's view.
await new Promise((resolve) => setTimeout(resolve, 1500));
let mismatches = 0;
for (const tracked of healthy) {
  const state = (await (
    await fetch(`${base}/api/v1/state?topics=${tracked.subscriptions.join(',')}`, {
      headers: { authorization: `Bearer ${adminToken}` },
    })
  ).json()) as { data: JsonObject; sequence: number };
  if (JSON.stringify(sortKeys(state.data)) !== JSON.stringify(sortKeys(tracked.client.view.data)))
    mismatches++;
}
const resyncs = healthy.reduce((sum, t) => sum + t.client.resyncs, 0);
const firstRss = rssSamples[Math.min(1, rssSamples.length - 1)];
const lastRss = rssSamples.at(-1)!;
const leak = rssSamples.length >= 3 && lastRss > firstRss * 1.3 + 20 * 1024 * 1024;
process.stdout.write(`publisher: ${publisherReport.trim()}\n`);
process.stdout.write(
  `result: ${healthy.length} healthy clients, views equal to the server's: ${healthy.length - mismatches}, resyncs ${resyncs}, reconnects ${reconnects}, stalling/reconnecting close codes ${JSON.stringify(closeCodes)}, rss ${(firstRss / 1048576).toFixed(1)} → ${(lastRss / 1048576).toFixed(1)} MB\n`,
);

for (const tracked of healthy) tracked.client.close();
const stoppingAt = Date.now();
(hub as ChildProcess).kill('SIGTERM');
const [hubCode, hubSignal] = await hubExited;
const hubExit = hubSignal ? `signal ${hubSignal}` : `code ${hubCode}`;
process.stdout.write(`hub: exited with ${hubExit} ${Date.now() - stoppingAt} ms after SIGTERM\n`);
await redis.kill();
const hubFailed = hubCode !== 0 || hubSignal !== null;
const failed = mismatches > 0 || resyncs > 0 || leak || hubFailed;
process.stdout.write(
  failed
    ? `soak FAILED: ${mismatches} lost-update mismatches, ${resyncs} resyncs, leak ${leak}, hub exit ${hubExit}${hubFailed ? ' (expected code 0)' : ''}\n`
    : 'soak passed\n',
);
process.exit(failed ? 1 : 0);

function hubRss(): number {
  const status = readFileSync(`/proc/${hub.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

async function waitForReady(): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      if ((await fetch(`${base}/ready`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the hub did not become ready');
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
  );
}
