import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { parseCli, usageError } from '../../src/cli.ts';

/** Runs `body` with process.exit and the standard streams stubbed: what it printed, and the exit code if any. */
function capture(
  t: TestContext,
  body: () => unknown,
): { code?: number; stdout: string; stderr: string; value?: unknown } {
  const out = { stdout: '', stderr: '' } as {
    code?: number;
    stdout: string;
    stderr: string;
    value?: unknown;
  };
  class Exit extends Error {}
  t.mock.method(process, 'exit', (code?: number) => {
    out.code = code;
    throw new Exit();
  });
  t.mock.method(process.stdout, 'write', (chunk: string) => {
    out.stdout += chunk;
    return true;
  });
  t.mock.method(process.stderr, 'write', (chunk: string) => {
    out.stderr += chunk;
    return true;
  });
  try {
    out.value = body();
  } catch (error) {
    if (!(error instanceof Exit)) throw error;
  } finally {
    t.mock.restoreAll();
  }
  return out;
}

const config = {
  options: { port: { type: 'string', short: 'p' }, verbose: { type: 'boolean' } },
  allowPositionals: false,
} as const;

test('parses a good command line like parseArgs (strict)', (t) => {
  const run = capture(t, () => parseCli('tool', 'Usage: tool', config, ['--port', '80', '--verbose']));
  assert.equal(run.code, undefined);
  // parseArgs returns null-prototype objects: compare the plain data.
  assert.deepEqual(JSON.parse(JSON.stringify(run.value)), {
    values: { port: '80', verbose: true },
    positionals: [],
  });
});

test('--help and -h print the usage (with a final newline) and exit 0, whatever else is there', (t) => {
  for (const args of [['--help'], ['-h'], ['--bogus', '--help'], ['--port', '1', '-h']]) {
    const run = capture(t, () => parseCli('tool', 'Usage: tool', config, args));
    assert.equal(run.code, 0, args.join(' '));
    assert.equal(run.stdout, 'Usage: tool\n');
    assert.equal(run.stderr, '');
  }
});

test('--help after -- is an argument, not a request for help', (t) => {
  const run = capture(t, () => parseCli('tool', 'Usage: tool', config, ['--', '--help']));
  assert.equal(run.code, 2);
  assert.equal(run.stderr, 'tool: unexpected argument --help (see --help)\n');
});

test('a bad command line is one line on stderr and exit 2', (t) => {
  const cases: [string[], string][] = [
    [['--bogus'], 'tool: unknown option --bogus (see --help)\n'],
    [['-x'], 'tool: unknown option -x (see --help)\n'],
    [['--port'], 'tool: option -p, --port needs a value (see --help)\n'],
    [['stray'], 'tool: unexpected argument stray (see --help)\n'],
  ];
  for (const [args, line] of cases) {
    const run = capture(t, () => parseCli('tool', 'Usage: tool', config, args));
    assert.equal(run.code, 2, args.join(' '));
    assert.equal(run.stderr, line);
    assert.equal(run.stdout, '');
  }
});

test('usageError: one line naming the problem, exit 2', (t) => {
  const run = capture(t, () => usageError('tool', '--port needs a number'));
  assert.equal(run.code, 2);
  assert.equal(run.stderr, 'tool: --port needs a number (see --help)\n');
});
