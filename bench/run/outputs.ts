/**
 * Writes bench/results.json, bench/results.svg and BENCHMARKS.md (between its markers), formatted by Biome; or, for
 * the replicas scenario, bench/replicas.json and BENCHMARKS.md between the replicas markers, leaving the rest.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderMarkdown } from '../report/markdown.ts';
import { renderReplicasMarkdown } from '../report/replicas.ts';
import { renderSvg } from '../report/svg.ts';
import { bench, log, root } from './context.ts';
import type { BenchResults } from './results.ts';

export function writeOutputs(results: BenchResults): void {
  if (results.options.replicasScenario) {
    writeFileSync(join(bench, 'replicas.json'), `${JSON.stringify(results, null, 2)}\n`);
    const path = updateMarkdown((existing) => renderReplicasMarkdown(results, existing));
    format([path, join(bench, 'replicas.json')]);
    log('wrote BENCHMARKS.md (the replicas section), bench/replicas.json');
    return;
  }
  writeFileSync(join(bench, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(bench, 'results.svg'), renderSvg(results));
  const path = updateMarkdown((existing) => renderMarkdown(results, existing));
  format([path, join(bench, 'results.svg'), join(bench, 'results.json')]);
  log(`wrote BENCHMARKS.md, bench/results.svg, bench/results.json`);
}

/** Rewrites BENCHMARKS.md with `render(its current text)`; returns its path. */
function updateMarkdown(render: (existing: string) => string): string {
  const path = join(root, 'BENCHMARKS.md');
  let existing = '';
  try {
    existing = readFileSync(path, 'utf8');
  } catch {
    // first run
  }
  writeFileSync(path, render(existing));
  return path;
}

/** The generated files are committed: give them the repository's formatting, so `npm run lint` stays green. */
function format(paths: string[]): void {
  const biome = join(root, 'node_modules/.bin/biome');
  const formatted = spawnSync(biome, ['check', '--write', ...paths], { encoding: 'utf8' });
  if (formatted.status !== 0)
    log(`biome check of the generated files failed:\n${formatted.stdout}${formatted.stderr}`);
}
