import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';

const root = new URL('../..', import.meta.url).pathname;
const unitPath = join(root, 'systemd/dashboard-server.service');
const unitText = readFileSync(unitPath, 'utf8');

/** Runs a tool that the deploy checks need; fails (never skips) with the package to install when it is missing. */
function tool(command: string, args: string[], debianPackage: string) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if ((result.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    assert.fail(`${command} is not installed: apt-get install -y ${debianPackage} (.ci/run installs it)`);
  }
  if (result.error) throw result.error;
  return result;
}

/** The unit's values for a key, in order (a key may repeat). */
function settings(key: string): string[] {
  return [...unitText.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]);
}

describe('deploy.sh', () => {
  test('is shellcheck-clean', () => {
    const result = tool('shellcheck', ['--severity=style', join(root, 'deploy.sh')], 'shellcheck');
    assert.equal(result.status, 0, `shellcheck:\n${result.stdout}${result.stderr}`);
  });

  test('starts with the env shebang and strict mode', () => {
    const text = readFileSync(join(root, 'deploy.sh'), 'utf8');
    assert.match(text, /^#!\/usr\/bin\/env bash\n/);
    assert.match(text, /^set -euo pipefail$/m);
  });
});

describe('systemd/dashboard-server.service', () => {
  // `verify` checks that ExecStart's binary exists and is executable: verify a copy whose /opt and /etc
  // paths point into a temporary tree holding an executable bin/node.
  const tree = mkdtempSync(join(tmpdir(), 'dashboard-unit-'));
  after(() => rmSync(tree, { recursive: true, force: true }));

  test('passes systemd-analyze verify without a warning', () => {
    const current = join(tree, 'opt/dashboard-server/current');
    mkdirSync(join(current, 'bin'), { recursive: true });
    symlinkSync(process.execPath, join(current, 'bin/node'));
    mkdirSync(join(tree, 'etc/dashboard-server'), { recursive: true });
    const copy = join(tree, 'dashboard-server.service');
    writeFileSync(
      copy,
      unitText
        .replaceAll('/opt/dashboard-server/', `${tree}/opt/dashboard-server/`)
        .replaceAll('/etc/dashboard-server/', `${tree}/etc/dashboard-server/`),
    );
    const result = tool('systemd-analyze', ['verify', copy], 'systemd');
    // verify exits 0 even for settings it ignores ("Invalid maximum tasks value …, ignoring"): any output is a finding.
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr.trim(), '', `systemd-analyze verify:\n${result.stderr}`);
  });

  test('rates OK or better in systemd-analyze security', () => {
    const result = tool(
      'systemd-analyze',
      ['security', '--offline=true', '--no-pager', unitPath],
      'systemd (>= 250 for --offline)',
    );
    assert.equal(result.status, 0, result.stderr);
    const match = /Overall exposure level for dashboard-server\.service: ([0-9.]+) (\w+)/.exec(result.stdout);
    assert.ok(match, `no overall exposure level in:\n${result.stdout.slice(-500)}`);
    assert.ok(Number(match[1]) <= 2, `exposure ${match[1]} ${match[2]}; docs/deploy.md states 1.1`);
    assert.match(match[2], /^(SAFE|OK)$/);
  });

  test('runs the release as the dashboard user with the limits and stop timeout of docs/deploy.md', () => {
    assert.deepEqual(settings('User'), ['dashboard']);
    assert.deepEqual(settings('WorkingDirectory'), ['/opt/dashboard-server/current']);
    assert.match(
      settings('ExecStart')[0],
      /^\/opt\/dashboard-server\/current\/bin\/node .*\/opt\/dashboard-server\/current\/src\/server\.js --config \/etc\/dashboard-server\/config\.yaml$/,
    );
    assert.deepEqual(settings('LoadCredential'), ['jwt-secret:/etc/dashboard-server/jwt-secret']);
    assert.ok(settings('Environment').includes('DASHBOARD_AUTH__JWT__SECRET_FILE=%d/jwt-secret'));
    assert.deepEqual(settings('CPUQuota'), ['50%']);
    assert.deepEqual(settings('MemoryMax'), ['512M']);
    assert.deepEqual(settings('MemoryHigh'), ['448M']);
    assert.deepEqual(settings('TasksMax'), ['100']);
    assert.ok(Number(settings('LimitNOFILE')[0]) > 10000, 'room for websocket.max_clients sockets');
    assert.deepEqual(settings('Restart'), ['on-failure']);
    assert.deepEqual(settings('KillSignal'), ['SIGTERM']);
    // server.shutdown_timeout (30s), the whole shutdown's limit, must fit before systemd's SIGKILL, with margin.
    assert.ok(Number.parseInt(settings('TimeoutStopSec')[0], 10) > 35);
    assert.deepEqual(settings('StandardOutput'), ['journal']);
  });

  test('does not set MemoryDenyWriteExecute (V8 JIT needs writable, then executable memory)', () => {
    assert.deepEqual(settings('MemoryDenyWriteExecute'), []);
  });
});
