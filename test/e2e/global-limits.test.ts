import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { USER_SLOT_TTL_MS, userSlotKey } from '../../src/fleet/user-slots.ts';
import { type RunningApp, startApp } from '../helpers/app.ts';
import { openSocket, refusedUpgrade, tryUpgrade, type WatchedSocket } from '../helpers/client.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';
import { authOn, SECRET_A, signToken } from '../helpers/tokens.ts';

/**
 * websocket.global_limits: max_clients_per_user across replicas (apps on one Redis), with the slots in Redis
 * (`<leader.key>:clients:<user>`), fail-open when Redis does not answer, and a dead replica's slots aging out.
 */

const LEADER_KEY = 'dashboard-server:leader';
let redis: TestRedis;
let probe: Redis;
const started: RunningApp[] = [];
const sockets: WatchedSocket[] = [];

before(async () => {
  redis = await TestRedis.start();
  probe = redis.client();
});

after(async () => {
  await Promise.all(sockets.map((socket) => socket.close()));
  await Promise.all(started.map((running) => running.close()));
  probe.disconnect();
  await redis.kill();
});

/** A replica: auth on, two sockets per user, global limits on unless `globalLimits` is false. */
async function replica(globalLimits = true, redisUrl = redis.url): Promise<RunningApp> {
  const running = await startApp(redisUrl, {
    auth: authOn(),
    websocket: {
      connect_rate_limit: { max: 1000, window: '1m' },
      max_clients_per_user: 2,
      global_limits: globalLimits,
    },
  });
  started.push(running);
  return running;
}

const tokenOf = (userId: string) => signToken({ userId, role: 'trader' });

async function open(running: RunningApp, userId: string): Promise<WatchedSocket> {
  const socket = await openSocket(running.url, { token: tokenOf(userId) });
  sockets.push(socket);
  return socket;
}

async function assertTooMany(running: RunningApp, userId: string, what: string): Promise<void> {
  const refusal = await refusedUpgrade(running.url, { token: tokenOf(userId) });
  assert.equal(refusal.status, 429, what);
  assert.equal(refusal.body.error, 'too_many_connections', what);
}

const slotsOf = (userId: string, client = probe) => client.zrange(userSlotKey(LEADER_KEY, userId), 0, '-1');

/** Polls until `check` holds (every 20 ms, within `timeoutMs`). */
async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function redisNow(): Promise<number> {
  const [seconds, micros] = await probe.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

describe('two replicas on one Redis', () => {
  test('the limit holds across them; other users connect; a closed socket frees its slot', async () => {
    const a = await replica();
    const b = await replica();
    const onA = await open(a, 'pat');
    await open(b, 'pat');
    await assertTooMany(a, 'pat', 'third on a');
    await assertTooMany(b, 'pat', 'third on b');
    // Each replica counts only its own socket of pat's: the refusals came from Redis.
    assert.equal(a.app.hub.clientCount('pat'), 1);
    assert.equal(b.app.hub.clientCount('pat'), 1);
    assert.equal((await slotsOf('pat')).length, 2);
    const other = await open(a, 'quinn');
    assert.equal((await other.request({ action: 'ping' }, 'pong')).type, 'pong');
    // Closing pat's socket on a gives its slot back (once a's hub has seen it leave): b admits one more.
    await onA.close();
    await until('the slot released', async () => (await slotsOf('pat')).length === 1);
    await open(b, 'pat');
    assert.equal(b.app.hub.clientCount('pat'), 2);
    await assertTooMany(a, 'pat', 'pat at the limit again');
    const info = a.app.fleetLimits.info();
    assert.equal(info.enabled, true);
    assert.equal(info.admitted, 2);
    assert.equal(info.refused, 2);
    assert.equal(info.failOpen, 0);
    assert.equal(info.held, 1);
    assert.equal(info.ttlMs, USER_SLOT_TTL_MS);
    // /debug (loopback) shows the same counts; so does /metrics, of the app built last (prom-client's registry is
    // the process's: the last app built in a process is the one its /metrics reads).
    const debug = (await (await fetch(`${a.url}/debug`)).json()) as Record<string, Record<string, unknown>>;
    assert.equal(debug.fleet_limits.refused, 2);
    assert.equal(debug.fleet_limits.replica, info.replica);
    assert.notEqual(b.app.fleetLimits.info().replica, info.replica);
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    assert.match(metrics, /dashboard_fleet_user_limit_total\{outcome="admitted"\} 2/);
    assert.match(metrics, /dashboard_fleet_user_limit_total\{outcome="refused"\} 1/);
    assert.match(metrics, /dashboard_fleet_user_limit_total\{outcome="fail_open"\} 0/);
    assert.match(metrics, /dashboard_fleet_limits_enabled 1/);
    assert.match(metrics, /dashboard_fleet_user_slots 2/);
    assert.match(metrics, /dashboard_fleet_user_slot_errors_total\{operation="refresh"\} 0/);
  });

  test('simultaneous upgrades on both replicas never pass the limit together', async () => {
    const a = await replica();
    const b = await replica();
    const token = tokenOf('rush');
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => tryUpgrade((i % 2 === 0 ? a : b).url, { token })),
    );
    for (const result of results) if (result.opened) sockets.push(result.socket);
    assert.equal(results.filter((result) => result.opened).length, 2);
    assert.deepEqual(
      results.filter((result) => !result.opened).map((result) => (result.opened ? 0 : result.status)),
      Array(8).fill(429),
    );
    assert.equal(a.app.hub.clientCount('rush') + b.app.hub.clientCount('rush'), 2);
    assert.equal((await slotsOf('rush')).length, 2);
  });

  test('an upgrade refused after the access check gives its slot back', async () => {
    const a = await replica();
    // b25 protocols are JSON only: refused 400 by the route, after the access check took a slot.
    for (let i = 0; i < 3; i++) {
      const refusal = await refusedUpgrade(a.url, {
        token: tokenOf('late-refusal'),
        query: 'protocol=b25-web&format=msgpack',
      });
      assert.equal(refusal.status, 400);
    }
    await until('the slots released', async () => (await slotsOf('late-refusal')).length === 0);
    await open(a, 'late-refusal');
    await open(a, 'late-refusal');
    assert.equal(a.app.fleetLimits.info().held, 2);
  });

  test('global_limits off: each replica counts alone (two per replica), and nothing is written to Redis', async () => {
    const a = await replica(false);
    const b = await replica(false);
    for (const running of [a, a, b, b]) await open(running, 'solo');
    await assertTooMany(a, 'solo', 'third on a');
    await assertTooMany(b, 'solo', 'third on b');
    assert.deepEqual(await slotsOf('solo'), []);
    assert.equal(a.app.fleetLimits.enabled, false);
    // The series are exported all the same, at 0.
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    assert.match(metrics, /dashboard_fleet_limits_enabled 0/);
    assert.match(metrics, /dashboard_fleet_user_limit_total\{outcome="fail_open"\} 0/);
  });

  test('a hostile sub (10 KB, or with `:`, `*`, a newline) makes a bounded key', async () => {
    const a = await replica();
    const subs = ['s'.repeat(10 * 1024), 'a:b*c\nd'];
    for (const sub of subs) {
      const socket = await openSocket(a.url, { token: signToken({ sub, role: 'trader' }) });
      sockets.push(socket);
      const key = userSlotKey(LEADER_KEY, sub);
      assert.match(key, /^dashboard-server:leader:clients:#[A-Za-z0-9_-]{43}$/);
      assert.equal((await probe.zrange(key, 0, '-1')).length, 1);
    }
    const keys = await probe.keys(`${LEADER_KEY}:clients:*`);
    for (const key of keys) assert.ok(key.length <= LEADER_KEY.length + 9 + 64, key.slice(0, 80));
  });
});

describe('when Redis does not answer', () => {
  test("fail open: admitted on the replica's own limit, even for simultaneous upgrades, and counted", async () => {
    const server = await TestRedis.start();
    try {
      const a = await replica(true, server.url);
      // Frozen: the connection stays open and nothing answers, so each upgrade waits the 500 ms bound.
      process.kill(server.pid!, 'SIGSTOP');
      let results: Awaited<ReturnType<typeof tryUpgrade>>[];
      try {
        const token = tokenOf('frozen');
        results = await Promise.all(Array.from({ length: 6 }, () => tryUpgrade(a.url, { token })));
      } finally {
        process.kill(server.pid!, 'SIGCONT');
      }
      for (const result of results) if (result.opened) sockets.push(result.socket);
      assert.equal(results.filter((result) => result.opened).length, 2);
      assert.deepEqual(
        results.filter((result) => !result.opened).map((result) => (result.opened ? 0 : result.status)),
        [429, 429, 429, 429],
      );
      assert.equal(a.app.hub.clientCount('frozen'), 2);
      const info = a.app.fleetLimits.info();
      assert.equal(info.failOpen, 2);
      assert.equal(info.held, 2);
      assert.match(info.lastError ?? '', /no reply within 500ms/);
      // The two scripts that waited run once Redis thaws: the fleet counts both sockets.
      const other = server.client();
      try {
        await until('the late slots', async () => (await slotsOf('frozen', other)).length === 2);
      } finally {
        other.disconnect();
      }
    } finally {
      await server.kill();
    }
  });
});

describe('a dead replica', () => {
  test('a killed replica keeps its slots at most the ttl; then the others admit again', async (t) => {
    const a = await replica();
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'dashboard-fleet-'));
    const secretFile = join(dir, 'jwt-secret');
    writeFileSync(secretFile, `${SECRET_A}\n`, { mode: 0o600 });
    const child = spawn(process.execPath, ['src/server.ts'], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: {
        ...process.env,
        DASHBOARD_SERVER__PORT: String(port),
        DASHBOARD_SERVER__HOST: '127.0.0.1',
        DASHBOARD_REDIS__URL: redis.url,
        DASHBOARD_AUTH__JWT__SECRET_FILE: secretFile,
        DASHBOARD_WEBSOCKET__GLOBAL_LIMITS: 'true',
        DASHBOARD_WEBSOCKET__MAX_CLIENTS_PER_USER: '2',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    t.after(() => child.kill('SIGKILL'));
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk;
    });
    await until(
      'the replica listening',
      () => {
        if (child.exitCode !== null) throw new Error(`exited early: ${output}`);
        return output.includes('Server listening');
      },
      20_000,
    ).catch((error: Error) => {
      throw new Error(`${error.message}: ${output}`);
    });
    const deadUrl = `http://127.0.0.1:${port}`;
    const onDead = await openSocket(deadUrl, { token: tokenOf('ghost') });
    await open(a, 'ghost');
    await assertTooMany(a, 'ghost', 'one on each replica');
    const key = userSlotKey(LEADER_KEY, 'ghost');
    const [deadMember] = (await slotsOf('ghost')).filter(
      (member) => !member.startsWith(`${a.app.fleetLimits.info().replica}:`),
    );
    assert.ok(deadMember, 'the other replica holds a slot');
    // Killed: no release, no refresh.
    child.kill('SIGKILL');
    await once(child, 'exit');
    await onDead.closed;
    assert.ok((await slotsOf('ghost')).includes(deadMember), 'still there after the kill');
    await assertTooMany(a, 'ghost', 'the dead replica still counts within the ttl');
    // Its slot expires within the ttl of its last refresh, on Redis's clock.
    const now = await redisNow();
    const expiry = Number(await probe.zscore(key, deadMember));
    assert.ok(expiry > now && expiry <= now + USER_SLOT_TTL_MS, `expires in ${expiry - now}ms`);
    // Waiting out the ttl would take up to 30 s: bring the expiry forward to 200 ms from now, as if the time had
    // passed, and wait for Redis's clock to pass it.
    await probe.zadd(key, 'XX', now + 200, deadMember);
    await until('the expiry passed', async () => (await redisNow()) > now + 200);
    await open(a, 'ghost');
    assert.equal(a.app.hub.clientCount('ghost'), 2);
    assert.ok(!(await slotsOf('ghost')).includes(deadMember), 'the dead slot is gone');
  });
});
