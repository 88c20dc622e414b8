/** bench/results.svg: latency, deliveries and memory against clients, one series per server. */
import type { BenchResults } from '../run/results.ts';
import { fmt, mainType } from './units.ts';

const COLORS: Record<string, string> = {
  hub: '#1f6feb',
  'hub json': '#1f6feb',
  'hub msgpack': '#0b3d91',
  'hub-whole': '#8250df',
  'hub-history': '#bf8700',
  limit: '#6e7781',
  'limit-spread': '#2da44e',
  naive: '#cf222e',
};

interface Series {
  name: string;
  color: string;
  dashed: boolean;
  points: [number, number][];
}

function panel(
  x0: number,
  y0: number,
  width: number,
  height: number,
  title: string,
  yLabel: string,
  series: Series[],
  xValues: number[],
): string {
  const all = series.flatMap((s) => s.points.map(([, y]) => y)).filter((y) => y > 0 && Number.isFinite(y));
  if (all.length === 0 || xValues.length === 0) return '';
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...all)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...all)));
  const xMin = Math.min(...xValues);
  const xMax = Math.max(...xValues);
  const left = x0 + 70;
  const right = x0 + width - 35;
  const top = y0 + 40;
  const bottom = y0 + height - 50;
  const sx = (x: number) =>
    xMax === xMin
      ? (left + right) / 2
      : left + ((Math.log10(x) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * (right - left);
  const sy = (y: number) =>
    bottom - ((Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (bottom - top);
  const parts: string[] = [
    `<text x="${x0 + width / 2}" y="${y0 + 22}" text-anchor="middle" font-size="15" font-weight="bold">${title}</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`,
    `<text x="${(left + right) / 2}" y="${bottom + 38}" text-anchor="middle" font-size="12">clients (log scale)</text>`,
    `<text x="${x0 + 16}" y="${(top + bottom) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 + 16} ${(top + bottom) / 2})">${yLabel}</text>`,
  ];
  for (let y = yMin; y <= yMax * 1.0001; y *= 10) {
    parts.push(
      `<line x1="${left}" y1="${sy(y)}" x2="${right}" y2="${sy(y)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${sy(y) + 4}" text-anchor="end" font-size="11">${fmt(y, y < 1 ? 1 : 0)}</text>`,
    );
  }
  for (const x of xValues) {
    parts.push(
      `<line x1="${sx(x)}" y1="${bottom}" x2="${sx(x)}" y2="${bottom + 5}" stroke="#333"/>`,
      `<text x="${sx(x)}" y="${bottom + 18}" text-anchor="middle" font-size="11">${fmt(x)}</text>`,
    );
  }
  let legendY = top + 4;
  for (const s of series) {
    const points = s.points.filter(([, y]) => y > 0 && Number.isFinite(y));
    if (points.length === 0) continue;
    const d = points
      .map(([x, y], i) => `${i === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
      .join(' ');
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`);
    for (const [x, y] of points)
      parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    parts.push(
      `<line x1="${left + 10}" y1="${legendY}" x2="${left + 34}" y2="${legendY}" stroke="${s.color}" stroke-width="2"${dash}/>`,
      `<text x="${left + 40}" y="${legendY + 4}" font-size="11">${s.name}</text>`,
    );
    legendY += 15;
  }
  return parts.join('\n');
}

export function renderSvg(results: BenchResults): string {
  const kinds = [...new Set(results.runs.map((r) => r.kind))];
  const xValues = [...new Set(results.runs.map((r) => r.clients))].sort((a, b) => a - b);
  const latency: Series[] = [];
  for (const kind of kinds) {
    const runs = results.runs.filter((r) => r.kind === kind).sort((a, b) => a.clients - b.clients);
    for (const [p, dashed] of [
      ['p99', false],
      ['p50', true],
    ] as const) {
      latency.push({
        name: `${kind} ${p}`,
        color: COLORS[kind] ?? '#000',
        dashed,
        points: runs.map((r) => [r.clients, r.latency[mainType(r)][p]]),
      });
    }
  }
  const bytes: Series[] = [];
  for (const kind of kinds) {
    const runs = results.runs.filter((r) => r.kind === kind).sort((a, b) => a.clients - b.clients);
    if (kind === 'hub') {
      for (const format of ['json', 'msgpack']) {
        bytes.push({
          name: `hub ${format}`,
          color: COLORS[`hub ${format}`],
          dashed: format === 'msgpack',
          points: runs.map((r) => {
            const classes = Object.entries(r.classes).filter(([key]) => key.split('|')[1] === format);
            const total = classes.reduce((sum, [, c]) => sum + c.bytes, 0);
            const clients = classes.reduce((sum, [, c]) => sum + c.clients, 0);
            return [r.clients, total / Math.max(1, clients) / r.seconds];
          }),
        });
      }
    } else {
      bytes.push({
        name: kind,
        color: COLORS[kind] ?? '#000',
        dashed: false,
        points: runs.map((r) => [r.clients, r.bytesPerClientPerSec]),
      });
    }
  }
  const width = 1000;
  const height = 440;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    '<title>dashboard-server fan-out benchmark: latency and bytes per client against clients</title>',
    `<rect width="${width}" height="${height}" fill="white"/>`,
    panel(
      0,
      0,
      width / 2,
      height - 20,
      'Publish→receive latency (tui; web-only runs: web)',
      'ms (log scale)',
      latency,
      xValues,
    ),
    panel(
      width / 2,
      0,
      width / 2,
      height - 20,
      'Bytes per client per second (delivered)',
      'bytes/s (log scale)',
      bytes,
      xValues,
    ),
    `<text x="10" y="${height - 8}" font-size="10" fill="#555">${results.startedAt.slice(0, 16)} UTC · ${results.machine.cpus} cores · Node ${results.machine.node} · npm run bench · up to 5,000 clients all tui (100 ms); 10,000: 8,000 web (250 ms) + 2,000 tui</text>`,
    '</svg>',
    '',
  ].join('\n');
}
