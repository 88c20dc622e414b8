import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * src/ is the service without its framework: only src/app.ts (composes) and src/server.ts (starts) may import
 * Fastify, its plugins, or anything under plugins/ and routes/. Every .ts file under src/, at any depth, is read.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = resolve(ROOT, 'src');
const ALLOWED = new Set(['src/app.ts', 'src/server.ts']);
const FRAMEWORK = /^(fastify|fastify-[^/]+|@fastify\/.+)(\/.*)?$/;
const LAYERS = ['plugins', 'routes'].map((dir) => resolve(ROOT, dir) + sep);

/** Every module specifier a file names: `import … from`, `export … from`, bare `import '…'`, `import('…')`. */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const pattern of patterns) for (const match of source.matchAll(pattern)) found.push(match[1]);
  return found;
}

/** Why `specifier`, imported by the file at `file`, crosses the boundary; undefined when it does not. */
function violation(file: string, specifier: string): string | undefined {
  if (FRAMEWORK.test(specifier)) return `imports ${specifier}`;
  if (specifier.startsWith('.')) {
    const target = resolve(dirname(file), specifier);
    if (LAYERS.some((layer) => target.startsWith(layer))) return `imports ${relative(ROOT, target)}`;
  }
  return undefined;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.ts'))
    .map((entry) => resolve(entry.parentPath, entry.name));
}

describe('the src/ boundary', () => {
  test('no file in src/ but app.ts and server.ts imports Fastify, plugins/ or routes/', () => {
    const files = tsFiles(SRC);
    assert.ok(files.length > 10, `found only ${files.length} files under src/`);
    const problems: string[] = [];
    for (const file of files) {
      const name = relative(ROOT, file).split(sep).join('/');
      if (ALLOWED.has(name)) continue;
      for (const specifier of specifiers(readFileSync(file, 'utf8'))) {
        const why = violation(file, specifier);
        if (why) problems.push(`${name} ${why}`);
      }
    }
    assert.deepEqual(problems, [], 'src/ must not know Fastify: move this into plugins/ or routes/');
  });

  test('the check sees every kind of import, in subfolders too', () => {
    const source = [
      "import Fastify from 'fastify';",
      "import type { FastifyInstance } from 'fastify';",
      "import fp from 'fastify-plugin';",
      "import metrics from 'fastify-metrics';",
      "import websocket from '@fastify/websocket';",
      'import {\n  Type,\n  type TypeBoxTypeProvider,\n} from "@fastify/type-provider-typebox";',
      "export { default } from '../../plugins/hub.ts';",
      "import '../../routes/ws.ts';",
      "const late = await import('../../plugins/poller.ts');",
      "import { Hub } from './fan-out.ts';",
      "import { Topic } from '../topics.ts';",
      "import { Type } from '@sinclair/typebox';",
    ].join('\n');
    const file = resolve(SRC, 'hub/example.ts');
    const found = specifiers(source);
    assert.equal(found.length, 12);
    assert.equal(found.filter((specifier) => violation(file, specifier)).length, 9);
    assert.equal(violation(resolve(SRC, 'hub/example.ts'), '../../plugins/hub.ts'), 'imports plugins/hub.ts');
    assert.equal(violation(resolve(SRC, 'example.ts'), '../routes/ws.ts'), 'imports routes/ws.ts');
    assert.equal(violation(resolve(SRC, 'example.ts'), './hub/fan-out.ts'), undefined);
    assert.equal(violation(resolve(SRC, 'example.ts'), '@sinclair/typebox'), undefined);
    assert.equal(violation(resolve(SRC, 'example.ts'), 'node:fs'), undefined);
    assert.equal(violation(resolve(SRC, 'example.ts'), './plugins-like.ts'), undefined);
  });
});
