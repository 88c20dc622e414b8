import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { connectClient } from '../helpers/client.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';
import { SECRET_A, signToken } from '../helpers/tokens.ts';

const root = new URL('../..', import.meta.url).pathname;
const server = join(root, 'src/server.ts');

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [server, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk;
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk;
  });
  const exited = once(child, 'exit').then(([code]) => ({ code: code as number, stdout, stderr }));
  return { child, exited, output: () => stdout };
}

function secretFile(secret: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'dashboard-secret-')), 'jwt-secret');
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
  return path;
}

function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'dashboard-config-'));
  const path = join(dir, 'config.yaml');
  writeFileSync(path, text);
  return path;
}

describe('config errors stop the service with one line naming the key', () => {
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    ['wrong type', ['--config', configFile('server:\n  port: abc\n')], {}, /server\.port/],
    [
      'unknown key',
      ['--config', configFile('websocket:\n  max_clients_typo: 5\n')],
      {},
      /unknown key websocket\.max_clients_typo/,
    ],
    [
      'bad duration',
      ['--config', configFile('broadcast:\n  tui_interval: fast\n')],
      {},
      /broadcast\.tui_interval.*"fast"/,
    ],
    [
      'bad env override',
      [],
      { DASHBOARD_BROADCAST__WEB_INTERVAL: '10 parsecs' },
      /broadcast\.web_interval.*DASHBOARD_BROADCAST__WEB_INTERVAL/,
    ],
    ['missing file', ['--config', '/nonexistent/config.yaml'], {}, /cannot read \/nonexistent\/config\.yaml/],
    ['file from DASHBOARD_CONFIG', [], { DASHBOARD_CONFIG: configFile('redis:\n  db: 99\n') }, /redis\.db/],
  ];
  for (const [name, args, env, pattern] of cases) {
    test(name, async () => {
      const { code, stderr, stdout } = await run(args, env).exited;
      assert.equal(code, 1);
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, `expected one line, got: ${stderr}`);
      assert.match(lines[0], pattern);
      assert.doesNotMatch(stderr, /\s+at /, 'no stack trace');
      assert.equal(stdout, '');
    });
  }
});

describe('--check-config', () => {
  test('exits 0 with a line for a valid config and 1 with the error line for an invalid one', async () => {
    const good = await run(['--check-config', '--config', configFile('auth:\n  enabled: false\n')]).exited;
    assert.equal(good.code, 0);
    assert.match(good.stdout, /config OK/);
    const bad = await run(['--check-config', '--config', configFile('server:\n  port: -1\n')]).exited;
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /server\.port/);
  });
});

describe('a running service', () => {
  let redis: TestRedis;
  before(async () => {
    redis = await TestRedis.start();
  });
  after(async () => {
    await redis.kill();
  });

  test('starts on the default config with env overrides, and SIGTERM closes clients with 1001 and exits 0', async (t) => {
    const port = await freePort();
    const service = run([], {
      DASHBOARD_SERVER__PORT: String(port),
      DASHBOARD_SERVER__HOST: '127.0.0.1',
      DASHBOARD_REDIS__URL: redis.url,
      // The shipped config reads the secret from a file; a fresh clone has none yet, so point it at one.
      DASHBOARD_AUTH__JWT__SECRET_FILE: secretFile(SECRET_A),
    });
    t.after(() => service.child.kill('SIGKILL'));
    // Wait for the listening log line rather than polling the port.
    await new Promise<void>((resolve, reject) => {
      service.child.stdout.on('data', () => {
        if (service.output().includes('Server listening')) resolve();
      });
      service.child.once('exit', () => reject(new Error(`exited early: ${service.output()}`)));
    });
    const token = signToken({ userId: 'u-1', email: 'ops@example.com', role: 'trader' });
    const client = await connectClient(`http://127.0.0.1:${port}`, { protocols: ['bearer', token] });
    await client.subscribe(['system']);
    const closed = client.closed();
    service.child.kill('SIGTERM');
    const { code, reason } = await closed;
    assert.equal(code, 1001);
    assert.equal(reason, 'server shutting down');
    const result = await service.exited;
    assert.equal(result.code, 0);
    assert.match(result.stdout, /"msg":"shutting down"/);
  });

  test('while draining for a client that never closes, new upgrades get 503 and a second signal exits at once', async (t) => {
    const port = await freePort();
    const service = run([], {
      DASHBOARD_SERVER__PORT: String(port),
      DASHBOARD_SERVER__HOST: '127.0.0.1',
      DASHBOARD_SERVER__SHUTDOWN_TIMEOUT: '20s',
      DASHBOARD_REDIS__URL: redis.url,
      DASHBOARD_AUTH__JWT__SECRET_FILE: secretFile(SECRET_A),
    });
    t.after(() => service.child.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      service.child.stdout.on('data', () => {
        if (service.output().includes('Server listening')) resolve();
      });
      service.child.once('exit', () => reject(new Error(`exited early: ${service.output()}`)));
    });
    const token = signToken({ userId: 'u-2', role: 'trader' });
    const url = `ws://127.0.0.1:${port}/ws?type=tui`;
    // A client that stops reading never answers the close frame: the drain has to wait for it.
    const stuck = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    await once(stuck, 'open');
    (stuck as unknown as { _socket: Socket })._socket.pause();
    const draining = new Promise<void>((resolve) => {
      service.child.stdout.on('data', () => {
        if (service.output().includes('"msg":"shutting down"')) resolve();
      });
    });
    service.child.kill('SIGTERM');
    await draining;
    const refused = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    refused.on('error', () => {});
    const [, response] = (await once(refused, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.equal(response.statusCode, 503);
    // The drain would wait 20 s for the stuck client; a second signal ends it now.
    service.child.kill('SIGTERM');
    const result = await service.exited;
    assert.equal(result.code, 1);
    assert.match(result.stdout, /second signal: exiting now/);
    stuck.terminate();
  });
});
