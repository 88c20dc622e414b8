/**
 * The "limit" baseline: a minimal `ws` server (no Fastify, no state, no diff) that, at the hub's cadences
 * (tui 100 ms, web 250 ms), sends ONE pre-encoded Buffer per group of clients (same type, format and
 * subscriptions, as the hub groups them) to every client of the group, padded to the size the hub's diffs of
 * that class had (`--sizes`, measured in the same run). The only thing it reads from Redis is each symbol's
 * latest market_data `sent_at`, which goes into the frame so that publish→receive latency is measured the same
 * way as for the hub. It is the ceiling of Node fan-out on this machine.
 *
 * --spread N: each group's clients are split into N phases sent at staggered offsets within the interval
 * (every client still gets one update per interval, with the latest values): what spreading a tick's sends
 * would give the hub.
 *
 * IPC: {evt:'ready'} when listening; {cmd:'start'} / {cmd:'stop'} → {evt:'stats', loop delay and tick times}.
 */
import { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { type WebSocket, WebSocketServer } from 'ws';
import { parseCli } from '../src/cli.ts';
import { BaselineMeter } from './common.ts';
import { type ClientType, classOf, type Format, marketDataScope, symbolNames } from './mix.ts';

const USAGE = `Usage: node bench/limit-server.ts --port PORT [options]   (started by bench/run.ts, driven over IPC)
The "limit" baseline: a minimal ws server sending one pre-encoded Buffer per group of clients.

Options:
  --port PORT        port to listen on
  --redis URL        Redis to read market_data sent_at from (default redis://127.0.0.1:6379)
  --symbols N        symbols (default 10)
  --tui-interval MS  tui cadence (default 100)
  --web-interval MS  web cadence (default 250)
  --sizes JSON       frame size per class, measured on the hub (default {})
  --spread N         phases per interval (default 1)
  -h, --help         this help`;

const { values } = parseCli('limit-server', USAGE, {
  options: {
    port: { type: 'string' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    symbols: { type: 'string', default: '10' },
    'tui-interval': { type: 'string', default: '100' },
    'web-interval': { type: 'string', default: '250' },
    sizes: { type: 'string', default: '{}' },
    spread: { type: 'string', default: '1' },
  },
});

const symbols = symbolNames(Number(values.symbols));
const intervals: Record<ClientType, number> = {
  tui: Number(values['tui-interval']),
  web: Number(values['web-interval']),
};
const sizes = JSON.parse(values.sizes!) as Record<string, number>;
const phases = Math.max(1, Number(values.spread));
const packr = new Packr({ useRecords: false, mapsAsObjects: true });
const latestSentAt = new Map<string, number>();

interface Phase {
  clients: Set<WebSocket>;
  sequence: number;
  lastSentAt: Map<string, number>;
}
interface Group {
  type: ClientType;
  format: Format;
  size: number;
  symbols: string[];
  phases: Phase[];
  next: number;
}
const groups = new Map<string, Group>();

const subscriber = new Redis(values.redis!, { connectionName: 'bench:limit' });
subscriber.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => {
  const { sent_at: sentAt } = JSON.parse(message.toString()) as { sent_at?: number };
  if (typeof sentAt === 'number') latestSentAt.set(channel.toString().slice('market_data:'.length), sentAt);
});
await subscriber.psubscribe('market_data:*');

function encode(format: Format, message: object): Buffer {
  return format === 'json' ? Buffer.from(JSON.stringify(message)) : packr.pack(message);
}

/** The frame for one phase of a group: the new sent_at values, padded to the class's size. */
function frame(group: Group, phase: Phase): Buffer {
  // Stamped when the group's frame is built, as the hub stamps each group's diff.
  const timestamp = new Date().toISOString();
  const changed: Record<string, { sent_at: number }> = {};
  for (const symbol of group.symbols) {
    const sentAt = latestSentAt.get(symbol);
    if (sentAt === undefined || sentAt === phase.lastSentAt.get(symbol)) continue;
    phase.lastSentAt.set(symbol, sentAt);
    changed[symbol] = { sent_at: sentAt };
  }
  const message = {
    type: 'diff_update',
    sequence: phase.sequence + 1,
    base_sequence: phase.sequence,
    timestamp,
    changes: { market_data: changed },
    pad: '',
  };
  phase.sequence++;
  const bare = encode(group.format, message);
  // msgpack str8/str16 headers take 2–3 bytes; JSON needs none beyond the quotes already there.
  const missing = group.size - bare.length - (group.format === 'json' ? 0 : 3);
  if (missing <= 0) return bare;
  message.pad = 'x'.repeat(missing);
  return encode(group.format, message);
}

const meter = new BaselineMeter();

function tick(type: ClientType, phaseIndex: number): void {
  const started = performance.now();
  for (const group of groups.values()) {
    if (group.type !== type) continue;
    const phase = group.phases[phaseIndex];
    if (phase.clients.size === 0) continue;
    const data = frame(group, phase);
    const binary = group.format === 'msgpack';
    for (const socket of phase.clients) socket.send(data, { binary });
    meter.sentFrames += phase.clients.size;
  }
  meter.tickTimes.record((performance.now() - started) * 1000);
}

for (const type of ['tui', 'web'] as const) {
  let phaseIndex = 0;
  setInterval(() => {
    tick(type, phaseIndex);
    phaseIndex = (phaseIndex + 1) % phases;
  }, intervals[type] / phases);
}

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(values.port),
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
  backlog: 4096,
});
server.on('connection', (socket, request) => {
  const query = new URL(request.url ?? '/', 'http://x').searchParams;
  const type = (query.get('type') ?? 'web') as ClientType;
  const format = (query.get('format') ?? 'json') as Format;
  const set = query.get('bench_set') ?? 'unknown';
  const binary = format === 'msgpack';
  let joined: Phase | undefined;
  socket.on('message', (data) => {
    const { subscriptions } = JSON.parse(data.toString()) as { subscriptions: string[] };
    const key = `${type}|${format}|${[...subscriptions].sort().join(',')}`;
    let group = groups.get(key);
    if (!group) {
      group = {
        type,
        format,
        size: sizes[classOf({ type, format, set })] ?? 1024,
        symbols: marketDataScope(subscriptions, symbols),
        phases: Array.from({ length: phases }, () => ({
          clients: new Set(),
          sequence: 0,
          lastSentAt: new Map(),
        })),
        next: 0,
      };
      groups.set(key, group);
    }
    const phase = group.phases[group.next++ % phases];
    phase.clients.add(socket);
    joined = phase;
    socket.send(encode(format, { type: 'subscribed', subscriptions, sequence: phase.sequence }), { binary });
    socket.send(
      encode(format, {
        type: 'state_update',
        sequence: phase.sequence,
        epoch: 'limit',
        timestamp: new Date().toISOString(),
        data: {},
      }),
      { binary },
    );
  });
  socket.on('close', () => joined?.clients.delete(socket));
  socket.on('error', () => {});
});

meter.serve(server);
