/**
 * A fleet of real hub processes (`node src/server.ts --config <file>`) on one Redis, behind HAProxy running the
 * reference configuration ops/haproxy/haproxy.cfg exactly as docs/replicas.md sets it up (the addresses in its
 * environment variables), and the clients and checks the replica tests need. Every process started here is killed
 * in `stop()`, and with SIGKILL when this test process exits, whatever happened.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DashboardClient, type JsonObject, type StateUpdate } from '../../src/client.ts';
import type { GrpcCall } from './backends-grpc.ts';
import type { HttpRequestRecord } from './backends-http.ts';
import { sourceConfig } from './backends-poller.ts';
import { freePort } from './redis.ts';

const root = new URL('../..', import.meta.url).pathname;
/** The reference configuration, run as written. */
export const HAPROXY_CONFIG = join(root, 'ops/haproxy/haproxy.cfg');

/** Every child started here: killed when this process exits, even after a failed test. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

/** Resolves once `condition` returns a value other than undefined/false, checking every `everyMs`. */
export async function waitFor<T>(
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  {
    timeoutMs = 10_000,
    everyMs = 50,
    message = 'condition',
  }: { timeoutMs?: number; everyMs?: number; message?: string } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${message}: not reached within ${timeoutMs} ms`);
    // Another process's state: nothing to subscribe to, so look again shortly.
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * fetch with a deadline: a process that accepts a connection and never answers fails the test with the URL, where
 * undici would wait 300 s for the headers.
 */
export async function request(url: string, timeoutMs = 5000): Promise<Response> {
  try {
    return await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    if ((error as Error).name === 'TimeoutError')
      throw new Error(`GET ${url}: no answer within ${timeoutMs} ms`);
    throw error;
  }
}

/** The status of GET /ready (the body read and dropped). */
export async function readyStatus(baseUrl: string): Promise<number> {
  const response = await request(`${baseUrl}/ready`);
  await response.arrayBuffer();
  return response.status;
}

/** `promise`, or a rejection naming `what` if it has not settled within `timeoutMs`. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** GET a JSON document (the body always consumed). */
export async function getJson(url: string): Promise<{ status: number; body: JsonObject }> {
  const response = await request(url);
  const text = await response.text();
  let body: JsonObject;
  try {
    body = JSON.parse(text) as JsonObject;
  } catch {
    body = { raw: text };
  }
  return { status: response.status, body };
}

interface Running {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk;
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = once(child, 'exit').then(([code, signal]) => {
    children.delete(child);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  return { child, output: () => output, exited };
}

/** One hub process of the fleet. */
export class HubReplica {
  readonly name: string;
  readonly port: number;
  /** The api_key its config gives every backend: the stand-ins tell the replicas apart by it. */
  readonly apiKey: string;
  private readonly running: Running;

  constructor(name: string, port: number, apiKey: string, running: Running) {
    this.name = name;
    this.port = port;
    this.apiKey = apiKey;
    this.running = running;
  }

  /** `http://127.0.0.1:PORT`, the replica itself (not through the balancer). */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.running.child.pid!;
  }

  get alive(): boolean {
    return this.running.child.exitCode === null && this.running.child.signalCode === null;
  }

  get exited() {
    return this.running.exited;
  }

  /** Everything the process wrote (pino JSON lines on stdout, anything on stderr). */
  output(): string {
    return this.running.output();
  }

  /** Its log lines, parsed (lines that are not JSON left out). */
  logLines(): JsonObject[] {
    return this.output()
      .split('\n')
      .flatMap((line) => {
        try {
          return [JSON.parse(line) as JsonObject];
        } catch {
          return [];
        }
      });
  }

  signal(signal: NodeJS.Signals): void {
    this.running.child.kill(signal);
  }

  async debug(): Promise<JsonObject> {
    const { status, body } = await getJson(`${this.url}/debug`);
    assert.equal(status, 200, `${this.name} /debug answered ${status}: ${JSON.stringify(body)}`);
    return body;
  }

  /** GET /api/v1/state?topics=… of this replica. */
  async state(topics: string[]): Promise<{ epoch: string; sequence: number; data: JsonObject }> {
    const { status, body } = await getJson(`${this.url}/api/v1/state?topics=${topics.join(',')}`);
    assert.equal(status, 200, `${this.name} /api/v1/state answered ${status}: ${JSON.stringify(body)}`);
    return body as unknown as { epoch: string; sequence: number; data: JsonObject };
  }

  async metrics(): Promise<string> {
    const response = await request(`${this.url}/metrics`);
    return response.text();
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.alive) return;
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** HAProxy on the reference configuration, in the foreground (`-db`), logging to stdout. */
export class Balancer {
  readonly port: number;
  readonly statsPort: number;
  readonly socketPath: string;
  private readonly running: Running;

  constructor(port: number, statsPort: number, socketPath: string, running: Running) {
    this.port = port;
    this.statsPort = statsPort;
    this.socketPath = socketPath;
    this.running = running;
  }

  /** Where clients connect: `http://127.0.0.1:PORT`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  output(): string {
    return this.running.output();
  }

  /** The `/stats;csv` rows of backend `hubs`, by server name: `status` (UP, DOWN, …) and the counters. */
  async servers(): Promise<Record<string, Record<string, string>>> {
    const text = await (await request(`http://127.0.0.1:${this.statsPort}/stats;csv`)).text();
    const [header, ...rows] = text.trim().split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const servers: Record<string, Record<string, string>> = {};
    for (const row of rows) {
      const values = row.split(',');
      const record = Object.fromEntries(columns.map((column, i) => [column, values[i] ?? '']));
      if (record.pxname === 'hubs') servers[record.svname] = record;
    }
    return servers;
  }

  /** One command on HAProxy's runtime API (the stats socket of the configuration); resolves with its answer. */
  async command(line: string): Promise<string> {
    const socket = connect(this.socketPath);
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk;
    });
    await once(socket, 'connect');
    socket.end(`${line}\n`);
    await once(socket, 'close');
    return answer;
  }

  get alive(): boolean {
    return this.running.child.exitCode === null && this.running.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.running.child.kill('SIGKILL');
    await this.running.exited;
  }
}

export interface FleetOptions {
  redisUrl: string;
  /** The lease's key: one per test file, so fleets on the same Redis never mix. */
  leaderKey: string;
  /** leader.lease of every replica. */
  lease?: string;
  /**
   * Config sections of replica `index` (0-based) added to the fleet's own (deep-merged one level: a section given here
   * replaces the keys it names); `apiKey` is the replica's key for its backend_services.
   */
  config?: (index: number, apiKey: string) => Record<string, Record<string, unknown>>;
}

/** Merges two config documents one section deep. */
function mergeSections(
  base: Record<string, Record<string, unknown>>,
  extra: Record<string, Record<string, unknown>>,
): Record<string, Record<string, unknown>> {
  const merged = { ...base };
  for (const [section, keys] of Object.entries(extra)) merged[section] = { ...merged[section], ...keys };
  return merged;
}

/** The number of `server hubN` lines of the reference configuration: the fleet has as many replicas. */
export const REPLICAS = 3;

/**
 * Three hubs (as many as ops/haproxy/haproxy.cfg names) on one Redis with the same leader.key, each on its own port
 * with its own config file, and HAProxy in front of them on a free port. Resolves once every hub answers /ready and
 * HAProxy has seen every one of them pass its health check.
 */
export class Fleet {
  readonly hubs: HubReplica[];
  readonly balancer: Balancer;
  private readonly dir: string;

  private constructor(hubs: HubReplica[], balancer: Balancer, dir: string) {
    this.hubs = hubs;
    this.balancer = balancer;
    this.dir = dir;
  }

  static async start(options: FleetOptions): Promise<Fleet> {
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-replicas-'));
    const hubs: HubReplica[] = [];
    let balancer: Balancer | undefined;
    try {
      for (let index = 0; index < REPLICAS; index++) {
        const name = `hub${index + 1}`;
        const port = await freePort();
        const apiKey = `replica-key-${name}`;
        const document = mergeSections(
          {
            server: {
              host: '127.0.0.1',
              port,
              log_level: 'info',
              // HAProxy runs on this host: its X-Forwarded-For is believed (docs/replicas.md).
              trust_proxy: ['127.0.0.1/32'],
              shutdown_timeout: '10s',
            },
            redis: { url: options.redisUrl },
            leader: { key: options.leaderKey, lease: options.lease ?? '1s' },
            auth: { enabled: false },
            // Every test client comes from 127.0.0.1: one budget for all of them.
            websocket: { connect_rate_limit: { max: 10_000, window: '1m' } },
            http: { rate_limit: { max: 100_000, window: '1m' } },
          },
          options.config?.(index, apiKey) ?? {},
        );
        const path = join(dir, `${name}.yaml`);
        // JSON is YAML.
        writeFileSync(path, JSON.stringify(document));
        const running = start(process.execPath, [join(root, 'src/server.ts'), '--config', path]);
        hubs.push(new HubReplica(name, port, apiKey, running));
      }
      await Promise.all(hubs.map((hub) => waitReady(hub)));

      const port = await freePort();
      const statsPort = await freePort();
      const socketPath = join(dir, 'haproxy.sock');
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        DASHBOARD_LB_BIND: `127.0.0.1:${port}`,
        DASHBOARD_LB_STATS: `127.0.0.1:${statsPort}`,
        DASHBOARD_LB_SOCKET: socketPath,
        // Within this machine's file descriptor limit (the default, 50,000, needs 100,000 descriptors).
        DASHBOARD_LB_MAXCONN: '4000',
      };
      hubs.forEach((hub, index) => {
        env[`DASHBOARD_HUB${index + 1}`] = hub.address;
      });
      balancer = new Balancer(
        port,
        statsPort,
        socketPath,
        start('haproxy', ['-f', HAPROXY_CONFIG, '-db'], env),
      );
      const started = balancer;
      await waitFor(
        async () => {
          assert.ok(started.alive, `haproxy exited: ${started.output()}`);
          try {
            const servers = await started.servers();
            return hubs.every(
              (hub) => servers[hub.name]?.status === 'UP' && servers[hub.name].check_status === 'L7OK',
            );
          } catch {
            return false;
          }
        },
        { message: 'HAProxy sees every replica UP', timeoutMs: 10_000 },
      );
      return new Fleet(hubs, balancer, dir);
    } catch (error) {
      await Promise.all([...hubs.map((hub) => hub.stop(1000)), balancer?.stop()]);
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** The replica a snapshot's epoch belongs to. */
  async byEpoch(): Promise<Map<string, HubReplica>> {
    const map = new Map<string, HubReplica>();
    for (const hub of this.hubs.filter((h) => h.alive)) {
      // A draining replica may have closed its port already.
      const debug = await hub.debug().catch(() => undefined);
      if (debug) map.set(debug.epoch as string, hub);
    }
    return map;
  }

  /** The last lines of every process, for a failure message. */
  tails(lines = 30): string {
    const tail = (text: string) => text.trim().split('\n').slice(-lines).join('\n');
    return [
      ...this.hubs.map((hub) => `--- ${hub.name} (pid ${hub.pid}) ---\n${tail(hub.output())}`),
      `--- haproxy ---\n${tail(this.balancer.output())}`,
    ].join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all([...this.hubs.map((hub) => hub.stop(3000)), this.balancer.stop()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function waitReady(hub: HubReplica): Promise<void> {
  await waitFor(
    async () => {
      assert.ok(hub.alive, `${hub.name} exited before it was ready:\n${hub.output()}`);
      try {
        return (await readyStatus(hub.url)) === 200;
      } catch {
        return false;
      }
    },
    // Three processes loading at once on a busy 2-vCPU machine: a start alone takes 3 s of CPU.
    { message: `${hub.name} /ready`, timeoutMs: 40_000 },
  );
}

/** Which replica sent a request to a stand-in backend: by the api_key its config gave it. */
export function httpPoller(request: HttpRequestRecord): string | undefined {
  return request.headers['x-api-key'] as string | undefined;
}

export function grpcPoller(call: GrpcCall): string | undefined {
  const value = call.metadata.authorization?.[0];
  return typeof value === 'string' ? value.replace(/^Bearer /, '') : undefined;
}

/** One connection of a RoamingClient: the snapshot it started with, and how it ended. */
export interface Session {
  epoch: string;
  openedAt: number;
  snapshot: StateUpdate;
  closed?: { code: number; reason: string; at: number };
}

/**
 * A client that behaves as a dashboard does: connects through the balancer, subscribes, and when its connection
 * ends (1001, a dropped TCP connection) connects again, with a short backoff, and subscribes again; each connection
 * starts with a snapshot, whose epoch says which replica answered.
 */
export class RoamingClient {
  readonly sessions: Session[] = [];
  client: DashboardClient | undefined;
  private readonly url: string;
  private readonly subscriptions: string[];
  private stopped = false;
  private readonly updateListeners = new Set<(client: RoamingClient) => void>();
  private readonly sessionWaiters = new Set<() => void>();

  private constructor(url: string, subscriptions: string[]) {
    this.url = url;
    this.subscriptions = subscriptions;
  }

  static async connect(url: string, subscriptions: string[]): Promise<RoamingClient> {
    const roaming = new RoamingClient(url, subscriptions);
    await roaming.open(false);
    return roaming;
  }

  /** The current connection's view (the last one's, between connections). */
  get view(): JsonObject {
    return this.client?.view.data ?? {};
  }

  get session(): Session {
    return this.sessions[this.sessions.length - 1];
  }

  /** Called after every update of the view, on every connection. */
  onUpdate(listener: (client: RoamingClient) => void): () => void {
    this.updateListeners.add(listener);
    return () => this.updateListeners.delete(listener);
  }

  /** Resolves with the first session after the first `count` ones (a reconnection), within `timeoutMs`. */
  nextSession(count: number, timeoutMs = 10_000): Promise<Session> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.sessions.length <= count) return false;
        clearTimeout(timer);
        this.sessionWaiters.delete(check);
        resolve(this.sessions[count]);
        return true;
      };
      const timer = setTimeout(() => {
        this.sessionWaiters.delete(check);
        reject(
          new Error(
            `no new connection within ${timeoutMs} ms: ${JSON.stringify(this.sessions.map(({ snapshot, ...s }) => s))}`,
          ),
        );
      }, timeoutMs);
      if (!check()) this.sessionWaiters.add(check);
    });
  }

  /** Resolves when the current connection closes. */
  async closed(): Promise<{ code: number; reason: string; at: number }> {
    const session = this.session;
    const count = this.sessions.length;
    if (session.closed) return session.closed;
    await new Promise<void>((resolve) => {
      const check = () => {
        if (!this.sessions[count - 1].closed) return false;
        this.sessionWaiters.delete(check);
        resolve();
        return true;
      };
      this.sessionWaiters.add(check);
    });
    return this.sessions[count - 1].closed!;
  }

  stop(): void {
    this.stopped = true;
    this.client?.close();
  }

  private wake(): void {
    for (const waiter of [...this.sessionWaiters]) waiter();
  }

  private async open(retry: boolean): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      if (attempt > 0 || retry) {
        // A dashboard's reconnect backoff: 50 ms, doubling, at most a second.
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * 2 ** attempt)));
      }
      const client = new DashboardClient(this.url, { type: 'tui' });
      try {
        await within(client.connected(), 10_000, `connecting through ${this.url}`);
        const snapshot = await client.subscribe(this.subscriptions);
        if (this.stopped) {
          client.close();
          return;
        }
        this.client = client;
        const session: Session = { epoch: snapshot.epoch, openedAt: Date.now(), snapshot };
        client.on('update', () => {
          for (const listener of this.updateListeners) listener(this);
        });
        client.closed().then(({ code, reason }) => {
          session.closed = { code, reason, at: Date.now() };
          this.wake();
          if (!this.stopped) void this.open(true);
        });
        this.sessions.push(session);
        for (const listener of this.updateListeners) listener(this);
        this.wake();
        return;
      } catch {
        client.close();
        if (!retry) throw new Error(`cannot connect through ${this.url}`);
      }
    }
  }
}

/**
 * Resolves once `client`'s view of `topics` deep-equals GET /api/v1/state?topics=… of `hub` (checked again after
 * each update of the view, and at least every 100 ms, while the two converge).
 */
export async function viewMatchesState(
  client: RoamingClient,
  hub: HubReplica,
  topics: string[],
  timeoutMs = 5000,
): Promise<JsonObject> {
  let last: JsonObject = {};
  try {
    return await waitFor(
      async () => {
        last = (await hub.state(topics)).data;
        try {
          assert.deepStrictEqual(client.view, last);
          return last;
        } catch {
          return false;
        }
      },
      { timeoutMs, everyMs: 100, message: `the view equals ${hub.name}'s /api/v1/state` },
    );
  } catch (error) {
    throw new Error(
      `${(error as Error).message}\nview:  ${JSON.stringify(client.view)}\nstate: ${JSON.stringify(last)}`,
    );
  }
}

/**
 * The `backend_services` of a replica in these tests: the account (HTTP) and orders (gRPC) stand-ins, polled every
 * `interval`, with the replica's own `api_key` so the stand-ins can tell which replica polled.
 */
export function polledBackends(httpUrl: string, grpcAddress: string, apiKey: string, interval: string) {
  const options = { interval, timeout: '400ms', api_key: apiKey };
  return {
    account_monitor: sourceConfig(httpUrl, options),
    order_execution: sourceConfig(grpcAddress, options),
  };
}
