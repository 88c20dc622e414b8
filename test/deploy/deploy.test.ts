import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ChildRun, collect } from '../helpers/child.ts';
import { freePort, TestRedis } from '../helpers/redis.ts';
import { SECRET_A } from '../helpers/tokens.ts';

/**
 * deploy.sh end to end, into a temporary root with --root DIR --no-systemctl: a fresh install, an upgrade that
 * keeps an edited config, the installed release started from `current`, and releases that fail (config
 * check, readiness) and are rolled back. Without systemd, the test plays its part: when `current` switches,
 * it starts the service from it, as `systemctl restart` would, and deploy.sh polls --ready-url.
 */

const checkout = new URL('../..', import.meta.url).pathname;
/** The project's Node 24, which deploy.sh ships in each release (node_modules/.bin/node links to it). */
const projectNode = join(checkout, 'node_modules/node/bin/node');
const SHIPPED = [
  'src',
  'plugins',
  'routes',
  'proto',
  'scripts',
  'docs',
  'systemd',
  'config.yaml',
  'package.json',
  'package-lock.json',
  'README.md',
  'deploy.sh',
];

const work = mkdtempSync(join(tmpdir(), 'dashboard-deploy-'));
const root = join(work, 'root');
const app = join(root, 'opt/dashboard-server');
const etc = join(root, 'etc/dashboard-server');
const config = join(etc, 'config.yaml');

/** The environment for deploy.sh and the service: no coverage or test-runner variables, no DASHBOARD_*. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(NODE_V8_COVERAGE|NODE_OPTIONS|NODE_TEST_CONTEXT|DASHBOARD_)/.test(key)) continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Runs deploy.sh of a checkout (this one by default) into the temporary root. */
function deploy(args: string[], from = checkout, options: { unprivileged?: boolean } = {}) {
  const script = join(from, 'deploy.sh');
  // As root, drop to nobody (65534) to see the refusal; as anyone else, run as is.
  const command =
    options.unprivileged && process.getuid?.() === 0
      ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'bash', script]
      : ['bash', script];
  const child = spawn(command[0], [...command.slice(1), ...args], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { child, done: collect(child) };
}

const rootArgs = ['--root', root, '--no-systemctl'];

/**
 * A copy of the checkout's shipped files and build config (no tests), changed by `edit`, to deploy from. Its
 * node_modules is the checkout's (a link), as after `npm install`: deploy.sh compiles with its TypeScript.
 */
function checkoutCopy(name: string, edit: (dir: string) => void): string {
  const dir = join(work, name);
  for (const file of [...SHIPPED, 'tsconfig.json', 'tsconfig.build.json'])
    cpSync(join(checkout, file), join(dir, file), { recursive: true });
  symlinkSync(join(checkout, 'node_modules'), join(dir, 'node_modules'));
  edit(dir);
  return dir;
}

function link(name: 'current' | 'previous'): string | undefined {
  try {
    return readlinkSync(join(app, name));
  } catch {
    return undefined;
  }
}

function releases(): string[] {
  return readdirSync(join(app, 'releases')).sort();
}

let redis: TestRedis;
const credentials = join(work, 'credentials');

/**
 * Starts the installed service as the unit does: the release's own node, from `current`, with the installed
 * config; the secret comes from a credentials directory, as systemd's LoadCredential gives it.
 */
function startService(port: number, options: { configHost?: boolean } = {}) {
  const current = join(app, 'current');
  // --no-experimental-strip-types: the release runs as JavaScript; a .ts module left in its imports fails here.
  const child = spawn(
    join(current, 'bin/node'),
    ['--no-experimental-strip-types', join(current, 'src/server.js'), '--config', config],
    {
      cwd: current,
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        ...(options.configHost ? {} : { DASHBOARD_SERVER__HOST: '127.0.0.1' }),
        DASHBOARD_SERVER__PORT: String(port),
        DASHBOARD_REDIS__URL: redis.url,
        DASHBOARD_AUTH__JWT__SECRET_FILE: join(credentials, 'jwt-secret'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return { child, done: collect(child) };
}

/**
 * Runs deploy.sh with --ready-url on a free port and, like systemd would on `systemctl restart`, starts the
 * service from `current` as soon as deploy.sh switches it.
 */
async function deployAndRestart(
  args: string[],
  from: string,
  options: { configHost?: boolean; readyTimeout?: number } = {},
) {
  const port = await freePort();
  const before = link('current');
  // A release expected to fail waits out the whole timeout: keep it short there, generous where it must
  // come up on a loaded CI machine.
  const readyTimeout = String(options.readyTimeout ?? 3);
  const run = deploy(
    [...rootArgs, '--ready-url', `http://127.0.0.1:${port}/ready`, '--ready-timeout', readyTimeout, ...args],
    from,
  );
  let service: ReturnType<typeof startService> | undefined;
  const watch = setInterval(() => {
    const now = link('current');
    if (!service && now !== undefined && now !== before) service = startService(port, options);
  }, 25);
  const result = await run.done;
  clearInterval(watch);
  let serviceRun: ChildRun | undefined;
  if (service) {
    if (service.child.exitCode === null) service.child.kill('SIGTERM');
    serviceRun = await service.done;
  }
  return { ...result, service: serviceRun };
}

describe('deploy.sh --root DIR --no-systemctl', () => {
  let first: string;
  let second: string;

  before(async () => {
    redis = await TestRedis.start();
    // The operator's part of a first install: the login service's secret, root-only.
    mkdirSync(etc, { recursive: true });
    writeFileSync(join(etc, 'jwt-secret'), `${SECRET_A}\n`, { mode: 0o600 });
    mkdirSync(credentials);
    writeFileSync(join(credentials, 'jwt-secret'), `${SECRET_A}\n`, { mode: 0o600 });
  });
  after(async () => {
    await redis?.kill();
    rmSync(work, { recursive: true, force: true });
  });

  test('refuses bad usage, a missing secret, a too old Node and a non-root install into /, before changing anything', async () => {
    const noSystemctl = await deploy(['--root', root]).done;
    assert.equal(noSystemctl.code, 2);
    assert.match(noSystemctl.stderr, /--root .*add --no-systemctl/);
    const keep = await deploy([...rootArgs, '--keep', '0']).done;
    assert.equal(keep.code, 2);
    assert.match(keep.stderr, /--keep needs a number of at least 1/);

    const bare = join(work, 'bare');
    const noSecret = await deploy(['--root', bare, '--no-systemctl']).done;
    assert.equal(noSecret.code, 1);
    assert.match(
      noSecret.stderr,
      /etc\/dashboard-server\/jwt-secret is missing: put the login service's JWT secret/,
    );
    assert.equal(existsSync(bare), false);

    const oldNode = join(work, 'node20');
    writeFileSync(oldNode, '#!/bin/sh\necho v20.19.0\n');
    chmodSync(oldNode, 0o755);
    const tooOld = await deploy([...rootArgs, '--node', oldNode]).done;
    assert.equal(tooOld.code, 1);
    assert.match(tooOld.stderr, /Node v20\.19\.0 .* is too old: dashboard-server needs Node >= 24/);

    // The release is compiled by the checkout's TypeScript: a checkout without `npm install` cannot build one.
    const uninstalled = checkoutCopy('uninstalled', (dir) => rmSync(join(dir, 'node_modules')));
    const noCompiler = await deploy([...rootArgs, '--node', projectNode], uninstalled).done;
    assert.equal(noCompiler.code, 1);
    assert.match(noCompiler.stderr, /no TypeScript compiler in .*node_modules: run `npm install`/);

    // A copy the unprivileged user can read, wherever the checkout lives.
    const readable = mkdtempSync(join(tmpdir(), 'dashboard-deploy-script-'));
    chmodSync(readable, 0o755);
    cpSync(join(checkout, 'deploy.sh'), join(readable, 'deploy.sh'));
    try {
      const notRoot = await deploy(['--no-systemctl'], readable, { unprivileged: true }).done;
      assert.equal(notRoot.code, 1);
      assert.match(notRoot.stderr, /installing into \/ needs root/);
    } finally {
      rmSync(readable, { recursive: true, force: true });
    }
    assert.equal(existsSync(app), false);
  });

  test('--dry-run prints the steps and changes nothing', async () => {
    const run = await deploy([...rootArgs, '--dry-run']).done;
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /would copy .*bin\/node/);
    assert.match(run.stdout, /config: \(would\) installing the default/);
    assert.match(run.stdout, /dry run done: nothing was changed/);
    assert.deepEqual(readdirSync(root), ['etc']);
    assert.deepEqual(readdirSync(etc), ['jwt-secret']);
  });

  test('a fresh install: release with its own Node 24 and production dependencies, current link, unit and config', async () => {
    const run = await deploy(rootArgs).done;
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /config OK/);
    assert.match(run.stdout, /not restarted \(--no-systemctl\)/);

    const names = releases();
    assert.equal(names.length, 1);
    [first] = names;
    assert.match(first, /^0\.1\.0-[0-9]{14}$/);
    assert.equal(link('current'), `releases/${first}`);
    assert.equal(link('previous'), undefined);

    const release = join(app, 'releases', first);
    const node = join(release, 'bin/node');
    assert.equal(statSync(node).mode & 0o111, 0o111);
    assert.equal(statSync(node).size, statSync(projectNode).size);
    for (const file of [
      'src/server.ts',
      'src/server.js',
      'plugins/hub.js',
      'routes/ws.js',
      'proto/order.proto',
      'config.yaml',
    ])
      assert.ok(existsSync(join(release, file)), file);
    assert.equal(existsSync(join(release, 'test')), false, 'tests are not shipped');
    assert.ok(existsSync(join(release, 'node_modules/fastify/package.json')));
    for (const dev of ['typescript', '@biomejs', 'node', 'fast-check'])
      assert.equal(existsSync(join(release, 'node_modules', dev)), false, `devDependency ${dev} shipped`);
    assert.match(readFileSync(join(release, 'RELEASE'), 'utf8'), /^node=v24\./m);

    assert.equal(
      readFileSync(join(root, 'etc/systemd/system/dashboard-server.service'), 'utf8'),
      readFileSync(join(checkout, 'systemd/dashboard-server.service'), 'utf8'),
    );
    const installed = readFileSync(config, 'utf8');
    assert.match(installed, /^# dashboard-server configuration, installed by deploy\.sh/);
    assert.match(installed, /^ {4}secret_file: jwt-secret$/m, 'the secret beside the config');
    assert.equal(statSync(config).mode & 0o777, 0o640);
    assert.equal(readFileSync(join(app, 'config.yaml.last-default'), 'utf8'), installed);
  });

  test('an upgrade keeps an edited config and writes the new default beside it as config.yaml.new', async () => {
    const edited = readFileSync(config, 'utf8').replace('log_level: info', 'log_level: warn');
    writeFileSync(config, edited);
    const newer = checkoutCopy('newer', (dir) => {
      const file = join(dir, 'config.yaml');
      writeFileSync(file, `${readFileSync(file, 'utf8')}# a new default in this release\n`);
    });
    // The current release as one built before releases had JavaScript: a rollback to it must still start.
    const firstRelease = join(app, 'releases', first);
    for (const dir of ['src', 'plugins', 'routes']) {
      for (const name of readdirSync(join(firstRelease, dir), { recursive: true }) as string[])
        if (name.endsWith('.js')) rmSync(join(firstRelease, dir, name));
    }
    assert.equal(existsSync(join(firstRelease, 'src/server.js')), false);
    const run = await deploy([...rootArgs, '--node', projectNode], newer).done;
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /keeping your edited .*config\.yaml; writing this release's default beside it/);
    assert.match(run.stdout, /compiled the current release to JavaScript too/);
    assert.ok(existsSync(join(firstRelease, 'src/server.js')));
    assert.ok(existsSync(join(firstRelease, 'routes/ws.js')));

    assert.equal(readFileSync(config, 'utf8'), edited);
    assert.match(readFileSync(`${config}.new`, 'utf8'), /# a new default in this release\n$/);
    const names = releases();
    assert.equal(names.length, 2);
    second = names[1];
    assert.notEqual(second, first);
    assert.equal(link('current'), `releases/${second}`);
    assert.equal(link('previous'), `releases/${first}`);
    // The same runtime and lockfile: the new release shares the previous one's files instead of copying them.
    const inode = (release: string, file: string) => statSync(join(app, 'releases', release, file)).ino;
    assert.equal(inode(second, 'bin/node'), inode(first, 'bin/node'));
    assert.equal(
      inode(second, 'node_modules/fastify/package.json'),
      inode(first, 'node_modules/fastify/package.json'),
    );
  });

  test('the installed release starts from current with its own node and the installed config', async () => {
    const port = await freePort();
    const service = startService(port);
    try {
      let health: Response | undefined;
      for (let i = 0; i < 100 && !health; i++) {
        health = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
        if (!health) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(health, 'no answer on /health');
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: 'ok', service: 'dashboard-server' });
      // /ready follows once Redis is subscribed and the snapshot loaded.
      let ready = await fetch(`http://127.0.0.1:${port}/ready`);
      for (let i = 0; i < 100 && ready.status !== 200; i++) {
        await ready.arrayBuffer();
        await new Promise((resolve) => setTimeout(resolve, 100));
        ready = await fetch(`http://127.0.0.1:${port}/ready`);
      }
      assert.equal(ready.status, 200, await ready.text());
    } finally {
      service.child.kill('SIGTERM');
    }
    const { code, stdout, stderr } = await service.done;
    assert.equal(code, 0, `SIGTERM drains and exits 0: ${stderr}`);
    // The operator's edit (log_level: warn) is in effect: no info lines.
    assert.doesNotMatch(stdout, /"level":30/);
  });

  test('a config that fails the release’s check stops the deploy before the switch', async () => {
    const good = readFileSync(config, 'utf8');
    writeFileSync(config, good.replace('port: 8086', 'port: eighty'));
    try {
      const run = await deploy([...rootArgs, '--node', projectNode], join(work, 'newer')).done;
      assert.equal(run.code, 1);
      assert.match(run.stderr, /server\.port must be an integer.*"eighty".*nothing was switched/);
    } finally {
      writeFileSync(config, good);
    }
    assert.equal(link('current'), `releases/${second}`);
    assert.deepEqual(releases(), [first, second]);
  });

  test('a release that does not become ready is rolled back: current points at the previous release again', async () => {
    const broken = checkoutCopy('broken', (dir) => {
      // Passes --check-config (which exits before this line), then dies once listening.
      const server = join(dir, 'src/server.ts'); // compiled into the release's src/server.js
      writeFileSync(server, `${readFileSync(server, 'utf8')}throw new Error('broken release');\n`);
    });
    // 10 s, not 3: the release must reach its throw before the rollback removes its files under it (under a loaded
    // fresh-clone run it was still loading plugins at 3 s, and died of a missing src/admin/index.html instead).
    const run = await deployAndRestart(['--node', projectNode], broken, { readyTimeout: 10 });
    assert.equal(run.code, 1, run.stdout);
    assert.ok(run.service, 'the new release was started');
    assert.match(run.service.stderr, /broken release/);
    assert.match(run.stderr, /did not answer 200 within 10s .*: rolled back to /);
    assert.equal(link('current'), `releases/${second}`);
    assert.equal(link('previous'), `releases/${first}`);
    assert.deepEqual(releases(), [first, second], 'the failed release is removed');
  });

  test('a release that becomes ready stays, and --keep prunes the oldest', async () => {
    const run = await deployAndRestart(['--node', projectNode, '--keep', '1'], join(work, 'newer'), {
      readyTimeout: 30,
    });
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.match(run.stdout, /HTTP 200 \{"status":"ready"\}/);
    const names = releases();
    const third = names.at(-1)!;
    assert.deepEqual(names, [second, third], `${first} pruned, the previous release kept`);
    assert.equal(link('current'), `releases/${third}`);
    assert.equal(link('previous'), `releases/${second}`);
  });

  test('a rollback also puts back the config the deploy updated', async () => {
    // The operator merges config.yaml.new and edits nothing else: later defaults then replace the config.
    const merged = readFileSync(`${config}.new`, 'utf8');
    writeFileSync(config, merged);
    rmSync(`${config}.new`);
    const before = link('current');
    const unlistenable = checkoutCopy('unlistenable', (dir) => {
      const file = join(dir, 'config.yaml');
      // Valid for --check-config, but not an address of this host (TEST-NET-3): listen fails.
      writeFileSync(file, readFileSync(file, 'utf8').replace('host: 0.0.0.0', 'host: 203.0.113.1'));
    });
    // Long enough for the service to reach listen() on a loaded machine (it takes ~1.3 s alone): what is tested is
    // the config put back, not the timeout.
    const run = await deployAndRestart(['--node', projectNode], unlistenable, {
      configHost: true,
      readyTimeout: 10,
    });
    assert.equal(run.code, 1, run.stdout);
    // The service started on the new config (and could not listen), then the old config came back.
    assert.ok(run.service, 'the new release was started');
    assert.match(run.service.stdout, /cannot listen on 203\.0\.113\.1/);
    assert.equal(readFileSync(config, 'utf8'), merged);
    assert.equal(readFileSync(join(app, 'config.yaml.last-default'), 'utf8'), merged);
    assert.equal(link('current'), before);
    assert.equal(readdirSync(etc).filter((f) => f.startsWith('.')).length, 0, 'no rollback copies left');
  });
});
