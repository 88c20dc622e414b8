/**
 * Command-line parsing for every entry point (the service, scripts/ and bench/): `--help`/`-h` prints the usage
 * and exits 0; a bad command line (unknown option, missing value, stray argument) prints one line naming it and
 * exits 2. It lives in src/ because src/server.ts uses it and the service must not depend on scripts/.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** The exit status of a bad command line. */
export const USAGE_EXIT = 2;

/** One line for a parseArgs error: `unknown option --x`, `option --port needs a value`, … */
function describe(error: Error & { code?: string }): string {
  const quoted = /'([^']+)'/.exec(error.message)?.[1] ?? '';
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted}`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${quoted}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `option ${quoted.replace(/ <value>$/, '')} needs a value`;
    default:
      return error.message.split('\n')[0];
  }
}

/**
 * Parses `args` (default: the process's arguments) with node:util parseArgs (strict). `name` prefixes the error
 * line; `usage` is printed as is for `--help`.
 */
export function parseCli<const T extends Omit<ParseArgsConfig, 'args' | 'strict'>>(
  name: string,
  usage: string,
  config: T,
  args: string[] = process.argv.slice(2),
): ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>> {
  const options = args.indexOf('--');
  const flags = options === -1 ? args : args.slice(0, options);
  if (flags.includes('--help') || flags.includes('-h')) {
    process.stdout.write(usage.endsWith('\n') ? usage : `${usage}\n`);
    process.exit(0);
  }
  try {
    return parseArgs({ ...config, args, strict: true });
  } catch (error) {
    if (!(error instanceof Error) || !String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS'))
      throw error;
    return usageError(name, describe(error));
  }
}

/** Prints `name: message (see --help)` and exits 2: for checks of option values after parsing. */
export function usageError(name: string, message: string): never {
  process.stderr.write(`${name}: ${message} (see --help)\n`);
  process.exit(USAGE_EXIT);
}
