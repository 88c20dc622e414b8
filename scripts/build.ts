/**
 * Turns a release's TypeScript into JavaScript beside it, so the service runs without Node's run-time type
 * stripping: that loads a WebAssembly compiler which stays in memory (~25 MB of RSS measured at start).
 * deploy.sh runs it on the release it builds; the unit runs src/server.js. Never run it in a checkout: the .js
 * files would sit beside the sources.
 *   node scripts/build.ts RELEASE_DIR
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { stripTypeScriptTypes } from 'node:module';
import { join } from 'node:path';

const SOURCE_DIRS = ['src', 'plugins', 'routes'];
/** A relative import of a .ts module: `from './x.ts'` or `import('./x.ts')`. */
const RELATIVE_TS_IMPORT = /(\bfrom\s+|\bimport\s*\(\s*)(['"])(\.{1,2}\/[^'"]+)\.ts\2/g;

function compile(source: string): string {
  // Only erasable syntax is used (tsconfig erasableSyntaxOnly), so stripping the types is the whole compilation.
  const javascript = stripTypeScriptTypes(source, { mode: 'strip' });
  return javascript.replace(RELATIVE_TS_IMPORT, '$1$2$3.js$2');
}

function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
    .map((entry) => join(entry.parentPath, entry.name));
}

const root = process.argv[2];
if (!root) {
  process.stderr.write('usage: node scripts/build.ts RELEASE_DIR\n');
  process.exit(2);
}
let count = 0;
for (const dir of SOURCE_DIRS) {
  for (const file of sourcesUnder(join(root, dir))) {
    const javascript = compile(readFileSync(file, 'utf8'));
    const left = javascript.match(/(['"])\.{1,2}\/[^'"]+\.ts\1/);
    if (left) {
      process.stderr.write(`build: ${file} still refers to ${left[0]} after compiling\n`);
      process.exit(1);
    }
    writeFileSync(`${file.slice(0, -3)}.js`, javascript);
    count++;
  }
}
process.stdout.write(`build: ${count} files compiled to JavaScript in ${root}\n`);
