/**
 * Summarizes a V8 .cpuprofile (from `npm run bench -- --profile`, i.e. `node --cpu-prof`): self time per
 * function and per module, and the inclusive time of a few functions named on the command line.
 *   node bench/profile-summary.ts FILE [--window /tmp/dashboard-server-bench-profiles/hub-5000.window.json] [--top 30]
 *     [--inclusive tick,broadcastGroup,handleMessage]
 * --window keeps only the samples of the measurement window (CLOCK_MONOTONIC µs, V8's profile clock).
 */
import { readFileSync } from 'node:fs';
import { parseCli, usageError } from '../src/cli.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const USAGE = `Usage: node bench/profile-summary.ts FILE [options]
Summarizes a V8 .cpuprofile: self time per function and per module, inclusive time of named functions.

Options:
  --window FILE      keep only the samples of this measurement window (JSON from npm run bench -- --profile)
  --top N            rows per table (default 30)
  --inclusive LIST   functions to give the inclusive time of, comma-separated
  -h, --help         this help`;

const { values, positionals } = parseCli('profile-summary', USAGE, {
  allowPositionals: true,
  options: {
    top: { type: 'string', default: '30' },
    inclusive: { type: 'string', default: '' },
    window: { type: 'string' },
  },
});
if (positionals.length !== 1) usageError('profile-summary', 'one .cpuprofile FILE expected');
const profile = JSON.parse(readFileSync(positionals[0], 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

const window = values.window
  ? (JSON.parse(readFileSync(values.window, 'utf8')) as { from: number; to: number })
  : { from: Number.NEGATIVE_INFINITY, to: Number.POSITIVE_INFINITY };
// Time per sample: the delta to the next sample.
const selfTime = new Map<number, number>();
let at = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  at += profile.timeDeltas[i];
  if (at < window.from || at > window.to) continue;
  const delta = profile.timeDeltas[i + 1] ?? 0;
  selfTime.set(profile.samples[i], (selfTime.get(profile.samples[i]) ?? 0) + delta);
}
const total = [...selfTime.values()].reduce((a, b) => a + b, 0);

function moduleOf(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1];
  if (url.startsWith('node:')) return 'node:*';
  const local = /\/(src|plugins|routes|bench)\/([^/]+)$/.exec(url);
  return local ? `${local[1]}/${local[2]}` : url;
}

const perFunction = new Map<string, number>();
const perModule = new Map<string, number>();
for (const [id, time] of selfTime) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  const name = `${functionName || '(anonymous)'} ${moduleOf(url, functionName)}:${lineNumber + 1}`;
  perFunction.set(name, (perFunction.get(name) ?? 0) + time);
  const module = moduleOf(url, functionName);
  perModule.set(module, (perModule.get(module) ?? 0) + time);
}

const line = (label: string, time: number) =>
  `${(time / 1000).toFixed(0).padStart(8)} ms ${((100 * time) / total).toFixed(1).padStart(5)}%  ${label}`;
process.stdout.write(`profile: ${(total / 1e6).toFixed(1)} s sampled\n\nself time by module:\n`);
for (const [name, time] of [...perModule].sort((a, b) => b[1] - a[1]).slice(0, 20))
  process.stdout.write(`${line(name, time)}\n`);
process.stdout.write('\nself time by function:\n');
for (const [name, time] of [...perFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
  process.stdout.write(`${line(name, time)}\n`);

const wanted = values.inclusive!.split(',').filter(Boolean);
if (wanted.length > 0) {
  process.stdout.write('\ninclusive time (the function and everything it called):\n');
  for (const fn of wanted) {
    let time = 0;
    for (const [id, self] of selfTime) {
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        if (byId.get(at)!.callFrame.functionName === fn) {
          time += self;
          break;
        }
      }
    }
    process.stdout.write(`${line(fn, time)}\n`);
  }
}
