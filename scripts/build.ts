/**
 * Compiles a release's TypeScript to JavaScript beside it with the TypeScript compiler (tsconfig.build.json:
 * the project's compiler options, relative `.ts` imports rewritten to `.js` by `rewriteRelativeImportExtensions`),
 * so the service runs without Node's run-time type stripping: that loads a WebAssembly compiler which stays in
 * memory (~25 MB of RSS measured at start). deploy.sh runs it from the checkout (where `npm install` put the
 * compiler, a devDependency) on the release it builds, and on a current release built before releases had
 * JavaScript; bench/run.ts on its copy of the hub. The unit runs src/server.js. Never run it on a checkout: the
 * .js files would sit beside the sources.
 *
 * Types are not checked here (`noCheck`): `npm test` does that, and a release has production dependencies only.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { parseCli, usageError } from '../src/cli.ts';

const USAGE = `Usage: node scripts/build.ts RELEASE_DIR
Compiles RELEASE_DIR's src/, plugins/, routes/ and scripts/ to JavaScript beside the TypeScript, with the
compiler options of tsconfig.build.json (types are checked by npm test, not here).

Options:
  -h, --help         this help`;

/** The folders of a release that hold code (those that exist: a release built by an older deploy.sh may lack one). */
const SOURCE_DIRS = ['src', 'plugins', 'routes', 'scripts'];
const CONFIG = new URL('../tsconfig.build.json', import.meta.url).pathname;

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

/** The compiler options of tsconfig.build.json, rooted at `root`: each .ts file's .js lands beside it. */
function compilerOptions(root: string): ts.CompilerOptions {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    CONFIG,
    { rootDir: root, outDir: root },
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => fail([diagnostic]),
    },
  );
  if (!parsed) return fail([]);
  // The config's own file list (the checkout's) is not used: the files are the release's.
  const errors = parsed.errors.filter((d) => d.code !== 18003); // "No inputs were found": not ours to find
  if (errors.length > 0) fail(errors);
  return parsed.options;
}

function fail(diagnostics: readonly ts.Diagnostic[]): never {
  const text = ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (name) => name,
    getCurrentDirectory: () => process.cwd(),
    getNewLine: () => '\n',
  });
  process.stderr.write(`build: ${text || 'cannot read tsconfig.build.json\n'}`);
  process.exit(1);
}

const { positionals } = parseCli('build', USAGE, { options: {}, allowPositionals: true });
if (positionals.length !== 1) usageError('build', 'one RELEASE_DIR expected');
const root = resolve(positionals[0]);
const files = SOURCE_DIRS.map((dir) => join(root, dir))
  .filter((dir) => existsSync(dir))
  .flatMap(sourcesUnder);
if (files.length === 0) usageError('build', `no TypeScript under ${root}/{${SOURCE_DIRS.join(',')}}`);

const program = ts.createProgram(files, compilerOptions(root));
const result = program.emit();
const diagnostics = [
  ...program.getOptionsDiagnostics(),
  ...program.getSyntacticDiagnostics(),
  ...result.diagnostics,
];
if (diagnostics.length > 0 || result.emitSkipped) fail(diagnostics);
process.stdout.write(`build: ${files.length} files compiled to JavaScript in ${root}\n`);
