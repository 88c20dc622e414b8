import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { describe, test } from 'node:test';
import { type ChildRun, collect } from '../helpers/child.ts';

/**
 * Every entry point with options (the service, scripts/ and bench/) shares one command-line contract (src/cli.ts):
 * `--help` prints the usage on stdout and exits 0 without doing anything else (src/server.ts does not start the
 * service); an unknown option prints one line on stderr and exits 2.
 */

const root = new URL('../..', import.meta.url).pathname;

/** Entry point → the name its error lines start with. */
const ENTRY_POINTS: Record<string, string> = {
  'src/server.ts': 'dashboard-server',
  'scripts/token.ts': 'token',
  'scripts/publisher.ts': 'publisher',
  'scripts/soak.ts': 'soak',
  'scripts/book-flood.ts': 'book-flood',
  'scripts/admin-screenshot.ts': 'admin-screenshot',
  'scripts/build.ts': 'build',
  'bench/run.ts': 'bench',
  'bench/book-flood.ts': 'bench:book-flood',
  'bench/ingest-micro.ts': 'ingest-micro',
  'bench/hub-overhead.ts': 'hub-overhead',
  'bench/profile-summary.ts': 'profile-summary',
  'bench/publisher.ts': 'bench-publisher',
  'bench/limit-server.ts': 'limit-server',
  'bench/naive-server.ts': 'naive-server',
};

/**
 * The cases are independent children, run side by side: as many at once as there are CPUs (each child is CPU-bound,
 * starting Node and loading its modules, so more would only queue), and at least two.
 */
const concurrency = Math.max(2, availableParallelism());

function run(file: string, args: string[]): Promise<ChildRun> {
  const child = spawn(process.execPath, ['--no-warnings', file, ...args], {
    cwd: root,
    // No Redis, no config from the environment: --help and a bad option must not need either.
    env: { PATH: process.env.PATH, DASHBOARD_REDIS__URL: 'redis://127.0.0.1:1' },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 20_000,
  });
  return collect(child);
}

describe('every entry point: --help and an unknown option', { concurrency }, () => {
  for (const [file, name] of Object.entries(ENTRY_POINTS)) {
    test(`${file} --help prints its usage and exits 0`, async () => {
      const { code, stdout, stderr } = await run(file, ['--help']);
      assert.equal(code, 0, stderr);
      assert.match(stdout, /^Usage: /);
      assert.match(stdout, /-h, --help/);
      assert.equal(stderr, '');
    });

    test(`${file} --bogus prints one line and exits 2`, async () => {
      const { code, stdout, stderr } = await run(file, ['--bogus']);
      assert.equal(code, 2, stderr);
      assert.equal(stderr, `${name}: unknown option --bogus (see --help)\n`);
      assert.equal(stdout, '');
    });
  }
});

describe('other command lines: a bad one is one line and exit 2', { concurrency }, () => {
  const cases: [string, string[], string][] = [
    ['src/server.ts', ['--config'], 'dashboard-server: option -c, --config needs a value (see --help)\n'],
    ['src/server.ts', ['extra'], 'dashboard-server: unexpected argument extra (see --help)\n'],
    ['scripts/token.ts', ['-h', '--bogus'], ''],
    ['scripts/build.ts', [], 'build: one RELEASE_DIR expected (see --help)\n'],
    ['bench/run.ts', ['--servers', 'hub,fast'], 'bench: unknown server fast in --servers (see --help)\n'],
    ['scripts/book-flood.ts', [], 'book-flood: --redis URL is required (see --help)\n'],
  ];
  for (const [file, args, line] of cases) {
    test(`${file} ${args.join(' ')}`, async () => {
      const { code, stderr } = await run(file, args);
      // -h wins over anything after it.
      assert.equal(code, line === '' ? 0 : 2, stderr);
      assert.equal(stderr, line);
    });
  }
});
