/** Writes bench/results.json, bench/results.svg and BENCHMARKS.md (between its markers), formatted by Biome. */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderMarkdown } from '../report/markdown.ts';
import { renderSvg } from '../report/svg.ts';
import { bench, log, root } from './context.ts';
import type { BenchResults } from './results.ts';

export function writeOutputs(results: BenchResults): void {
  writeFileSync(join(bench, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(bench, 'results.svg'), renderSvg(results));
  const path = join(root, 'BENCHMARKS.md');
  let existing = '';
  try {
    existing = readFileSync(path, 'utf8');
  } catch {
    // first run
  }
  writeFileSync(path, renderMarkdown(results, existing));
  // The generated files are committed: give them the repository's formatting, so `npm run lint` stays green.
  const biome = join(root, 'node_modules/.bin/biome');
  const formatted = spawnSync(
    biome,
    ['check', '--write', path, join(bench, 'results.svg'), join(bench, 'results.json')],
    { encoding: 'utf8' },
  );
  if (formatted.status !== 0)
    log(`biome check of the generated files failed:\n${formatted.stdout}${formatted.stderr}`);
  log(`wrote BENCHMARKS.md, bench/results.svg, bench/results.json`);
}
