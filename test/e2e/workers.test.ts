import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import WebSocket from 'ws';
import { WatchedSocket } from '../helpers/client.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';

/**
 * `server.workers: 2` with real processes: the primary forks two replicas that share the port, starts another
 * when one is killed, drains them all on SIGTERM, and gives up (exit 1) when none can listen.
 */

const root = new URL('../..', import.meta.url).pathname;
const LINE_TIMEOUT = 30_000;

type LogLine = Record<string, unknown> & { pid: number; msg: string };

/** The service with `server.workers: 2`, its stdout read as log lines as they come. */
class Cluster {
  readonly child: ChildProcess;
  readonly port: number;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private ended = false;
  private text = '';
  private pending = '';
  private readonly waiters = new Set<() => void>();

  constructor(port: number, redisUrl: string, dir: string, shutdownTimeout = '5s') {
    this.port = port;
    const path = join(mkdtempSync(join(dir, 'service-')), 'config.yaml');
    writeFileSync(
      path,
      [
        'server:',
        '  host: 127.0.0.1',
        `  port: ${port}`,
        '  workers: 2',
        '  log_level: info',
        `  shutdown_timeout: ${shutdownTimeout}`,
        'redis:',
        `  url: ${redisUrl}`,
        'auth:',
        '  enabled: false',
        '',
      ].join('\n'),
    );
    this.child = spawn(process.execPath, [join(root, 'src/server.ts'), '--config', path], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const take = (chunk: Buffer) => {
      this.text += chunk;
      this.pending += chunk;
      const parts = this.pending.split('\n');
      this.pending = parts.pop() ?? '';
      for (const part of parts) {
        try {
          this.lines.push(JSON.parse(part) as LogLine);
        } catch {
          // Not a log line (a stack trace on stderr): it stays in output() for the failure messages.
        }
      }
      for (const wake of [...this.waiters]) wake();
    };
    this.child.stdout!.on('data', take);
    this.child.stderr!.on('data', take);
    // 'close', not 'exit': every line written before the exit has been read by then.
    this.exited = once(this.child, 'close').then(([code, signal]) => {
      this.ended = true;
      for (const wake of [...this.waiters]) wake();
      return { code: code as number | null, signal: signal as string | null };
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  output(): string {
    return this.text;
  }

  /** Resolves with the first log line from index `from` on that satisfies `predicate`. */
  line(predicate: (line: LogLine) => boolean, from = 0, timeoutMs = LINE_TIMEOUT): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.slice(from).find(predicate);
        if (found !== undefined) {
          finish();
          resolve(found);
        } else if (this.ended) {
          finish();
          reject(new Error(`the service exited before the expected line:\n${this.text}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no expected line within ${timeoutMs}ms:\n${this.text}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** The pids of the workers that logged `Server listening`, in order. */
  listeningPids(): number[] {
    return this.lines.filter((line) => line.msg.startsWith('Server listening')).map((line) => line.pid);
  }

  /** Resolves once `count` distinct workers have logged `Server listening` (from line `from` on). */
  async workersListening(count: number, from = 0): Promise<number[]> {
    const pids = new Set<number>();
    await this.line((line) => {
      if (line.msg.startsWith('Server listening')) pids.add(line.pid);
      return pids.size >= count;
    }, from);
    return [...pids];
  }
}

/** GET /debug on a new connection each time, so that round-robin may hand it to either worker. */
async function debug(baseUrl: string): Promise<{ pid: number; clients: number }> {
  const response = await request(`${baseUrl}/debug`, { reset: true });
  assert.equal(response.statusCode, 200);
  return (await response.body.json()) as { pid: number; clients: number };
}

/**
 * Asks /debug until every pid of `pids` has answered (at most `attempts` requests); resolves with each one's
 * last answer. Polling an endpoint is the one way to see which worker takes a connection.
 */
async function answersFrom(baseUrl: string, pids: number[], attempts = 100) {
  const seen = new Map<number, { pid: number; clients: number }>();
  for (let i = 0; i < attempts && !pids.every((pid) => seen.has(pid)); i++) {
    const answer = await debug(baseUrl);
    seen.set(answer.pid, answer);
  }
  assert.deepEqual(
    pids.filter((pid) => !seen.has(pid)),
    [],
    `workers that never answered; seen ${[...seen.keys()]}`,
  );
  return seen;
}

/** A b25-web client: it subscribes on open, and the hub answers with a snapshot first. */
async function webClient(baseUrl: string): Promise<WatchedSocket> {
  const socket = new WatchedSocket(new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/ws?protocol=b25-web`));
  await socket.opened;
  socket.send({ type: 'subscribe', channels: ['market_data', 'system_health'] });
  const first = await socket.nextMessage(0);
  assert.equal(first.type, 'snapshot', JSON.stringify(first));
  return socket;
}

/** Whether a process with this pid exists (signal 0 checks without signalling). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    assert.equal((error as NodeJS.ErrnoException).code, 'ESRCH');
    return false;
  }
}

/** Resolves once `count` of `sockets` have closed, with their close codes. */
async function closes(sockets: WatchedSocket[], count: number): Promise<number[]> {
  const codes: number[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`only ${codes.length} of ${count} sockets closed`)),
      10_000,
    );
    for (const socket of sockets) {
      void socket.closed.then(({ code }) => {
        codes.push(code);
        if (codes.length === count) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
  return codes;
}

let redis: TestRedis;
let dir: string;
const started: Cluster[] = [];

before(async () => {
  redis = await TestRedis.start();
  dir = mkdtempSync(join(tmpdir(), 'dashboard-workers-'));
});

after(async () => {
  // A failed test may leave a service running: its workers end with it (they exit when the primary's IPC
  // channel closes), and any left are killed by pid.
  for (const cluster of started) {
    const pids = cluster.listeningPids();
    cluster.child.kill('SIGKILL');
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  await redis.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('server.workers: 2', () => {
  let cluster: Cluster;
  let first: number[];
  const sockets: WatchedSocket[] = [];

  before(async () => {
    cluster = new Cluster(await freePort(), redis.url, dir);
    started.push(cluster);
    first = await cluster.workersListening(2);
  });

  test('both workers serve: HTTP and WebSocket connections are spread over two pids', async () => {
    assert.equal(first.length, 2);
    assert.ok(!first.includes(cluster.child.pid!), 'the primary serves nothing itself');
    const answers = await answersFrom(cluster.url, first);
    assert.deepEqual([...answers.keys()].sort(), [...first].sort());

    for (let i = 0; i < 4; i++) sockets.push(await webClient(cluster.url));
    // Each worker holds its own clients: /debug counts those of the worker that answers.
    const counts = await answersFrom(cluster.url, first);
    const held = first.map((pid) => counts.get(pid)!.clients);
    assert.equal(
      held.reduce((a, b) => a + b),
      4,
      `clients per worker: ${held}`,
    );
    assert.ok(
      held.every((n) => n > 0),
      `round-robin gives each worker some of the sockets: ${held}`,
    );
  });

  test('a worker killed with SIGKILL is replaced by a new one while the other keeps serving', async () => {
    const [victim, survivor] = first;
    const before = await answersFrom(cluster.url, [victim]);
    const onVictim = before.get(victim)!.clients;
    const from = cluster.lines.length;
    process.kill(victim, 'SIGKILL');

    const restart = await cluster.line(
      (line) => line.pid === cluster.child.pid && line.worker === victim && /exited/.test(line.msg),
      from,
    );
    assert.equal(restart.level, 40);
    assert.equal(restart.signal, 'SIGKILL');
    assert.match(
      restart.msg,
      new RegExp(`^worker ${victim} exited \\(signal SIGKILL\\); starting another in`),
    );

    // The victim's sockets drop (no close frame: 1006); the survivor's stay open and keep answering.
    const codes = await closes(sockets, onVictim);
    assert.deepEqual(
      codes,
      codes.map(() => 1006),
    );
    const open = sockets.filter((socket) => socket.isOpen);
    assert.equal(open.length, sockets.length - onVictim);
    assert.ok(open.length > 0);
    for (const socket of open) {
      const pong = await socket.request({ type: 'ping', timestamp: 42 }, 'pong');
      assert.equal(pong.timestamp, 42);
    }

    const [replacement] = await cluster.workersListening(1, from);
    assert.ok(!first.includes(replacement), `a new process: ${replacement}`);
    assert.equal(alive(victim), false);
    const answers = await answersFrom(cluster.url, [survivor, replacement]);
    assert.equal(answers.get(survivor)!.clients, open.length);
    assert.equal(answers.get(replacement)!.clients, 0);
    first = [survivor, replacement];
  });

  test('SIGTERM to the primary closes every client with 1001 on every worker and exits 0, leaving no worker', async () => {
    for (let i = 0; i < 4; i++) sockets.push(await webClient(cluster.url));
    const open = sockets.filter((socket) => socket.isOpen);
    const counts = await answersFrom(cluster.url, first);
    assert.ok(
      first.every((pid) => counts.get(pid)!.clients > 0),
      'both workers hold clients',
    );

    const from = cluster.lines.length;
    cluster.child.kill('SIGTERM');
    const codes = await closes(open, open.length);
    assert.deepEqual(
      codes,
      codes.map(() => 1001),
    );
    const { code } = await cluster.exited;
    assert.equal(code, 0, cluster.output());

    const lines = cluster.lines.slice(from);
    assert.ok(lines.some((line) => line.pid === cluster.child.pid && /^shutting down/.test(line.msg)));
    for (const pid of first) {
      assert.ok(
        lines.some((line) => line.pid === pid && line.msg === 'shutting down' && line.signal === 'SIGTERM'),
        `worker ${pid} drained`,
      );
    }
    // Not one "second signal": the worker exits 0 after its drain.
    assert.doesNotMatch(cluster.output(), /second signal/);
    for (const pid of [...cluster.listeningPids(), cluster.child.pid!]) {
      assert.equal(alive(pid), false, `process ${pid} is gone`);
    }
  });
});

describe('workers that cannot listen', () => {
  test('the primary gives up after five failed starts and exits 1, with lines naming the cause', async (t) => {
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    t.after(() => taken.close());
    const port = (taken.address() as { port: number }).port;

    const cluster = new Cluster(port, redis.url, dir);
    started.push(cluster);
    const { code } = await cluster.exited;
    assert.equal(code, 1, cluster.output());

    const cannot = cluster.lines.filter((line) => line.msg.startsWith(`cannot listen on 127.0.0.1:${port}`));
    assert.ok(cannot.length >= 5, `each failed start says why:\n${cluster.output()}`);
    assert.match(JSON.stringify(cannot[0].err), /EADDRINUSE/);
    const fatal = cluster.lines.find((line) => line.pid === cluster.child.pid && line.level === 60);
    assert.ok(fatal, cluster.output());
    assert.match(fatal.msg, /^5 workers in a row exited before listening, the last with code 1; giving up/);
    // Restarts in between, after a growing delay.
    const delays = cluster.lines.filter((line) => line.pid === cluster.child.pid && line.level === 40);
    assert.ok(delays.length >= 3, cluster.output());
    assert.ok(!cluster.listeningPids().length);
  });
});

describe('workers that do not stop', () => {
  test('a second signal kills the draining workers and the primary exits 1 at once', async () => {
    const cluster = new Cluster(await freePort(), redis.url, dir, '30s');
    started.push(cluster);
    const pids = await cluster.workersListening(2);
    // Clients that stop reading never answer the close frame: each worker's drain would wait 30 s for them.
    const stuck: WatchedSocket[] = [];
    for (let i = 0; i < 2; i++) {
      const socket = await webClient(cluster.url);
      (socket.ws as unknown as { _socket: Socket })._socket.pause();
      stuck.push(socket);
    }
    const counts = await answersFrom(cluster.url, pids);
    assert.deepEqual(
      pids.map((pid) => counts.get(pid)!.clients),
      [1, 1],
    );

    const from = cluster.lines.length;
    const signalled = Date.now();
    cluster.child.kill('SIGTERM');
    for (const pid of pids)
      await cluster.line((line) => line.pid === pid && line.msg === 'shutting down', from);
    cluster.child.kill('SIGTERM');
    const { code } = await cluster.exited;
    assert.equal(code, 1, cluster.output());
    assert.ok(Date.now() - signalled < 10_000, 'well before the 30 s drain');
    const second = cluster.lines.find(
      (line) => line.pid === cluster.child.pid && /^second signal/.test(line.msg),
    );
    assert.equal(second?.msg, 'second signal: killing the workers and exiting now');
    for (const pid of pids) assert.equal(alive(pid), false, `worker ${pid} is gone`);
    for (const socket of stuck) socket.ws.terminate();
  });

  test('a worker still there after server.shutdown_timeout is killed, and the primary exits 1', async () => {
    const cluster = new Cluster(await freePort(), redis.url, dir, '1s');
    started.push(cluster);
    const [frozen, other] = await cluster.workersListening(2);
    // A stopped process cannot drain, nor exit at its own server.shutdown_timeout.
    process.kill(frozen, 'SIGSTOP');
    const from = cluster.lines.length;
    cluster.child.kill('SIGTERM');
    const { code } = await cluster.exited;
    assert.equal(code, 1, cluster.output());

    const primary = cluster.lines.slice(from).filter((line) => line.pid === cluster.child.pid);
    assert.ok(primary.some((line) => line.worker === other && line.code === 0));
    const kill = primary.find((line) => line.level === 50);
    assert.equal(kill?.msg, 'workers still running 6000ms after the stop; killing them');
    assert.deepEqual(kill.workers, [frozen]);
    assert.ok(primary.some((line) => line.worker === frozen && line.signal === 'SIGKILL'));
    assert.equal(alive(frozen), false);
  });
});
