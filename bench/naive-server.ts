/**
 * The "naive" baseline: the seed's design. It subscribes to the same Redis channels and keeps the same
 * aggregated state as the hub (the hub's own Ingest and StateStore, so the views are identical), and on every
 * tick of a client's cadence builds that client's full subscribed view and JSON.stringify's it for that
 * client alone, sent as a text frame: no diff, no grouping, no MessagePack (msgpack clients get JSON too).
 *
 * IPC: {evt:'ready'} when listening; {cmd:'start'} / {cmd:'stop'} → {evt:'stats', loop delay and tick times}.
 */
import { Redis } from 'ioredis';
import { type WebSocket, WebSocketServer } from 'ws';
import { parseCli } from '../src/cli.ts';
import { Ingest } from '../src/ingest/ingest.ts';
import { StateStore } from '../src/state.ts';
import { buildFilter, type Filter, INGEST_TOPICS, validateSubscription } from '../src/topics.ts';
import { BaselineMeter } from './common.ts';
import type { ClientType } from './mix.ts';

const USAGE = `Usage: node bench/naive-server.ts --port PORT [options]   (started by bench/run.ts, driven over IPC)
The "naive" baseline: a full JSON snapshot per client on every tick.

Options:
  --port PORT        port to listen on
  --redis URL        Redis to subscribe to (default redis://127.0.0.1:6379)
  --tui-interval MS  tui cadence (default 100)
  --web-interval MS  web cadence (default 250)
  -h, --help         this help`;

const { values } = parseCli('naive-server', USAGE, {
  options: {
    port: { type: 'string' },
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    'tui-interval': { type: 'string', default: '100' },
    'web-interval': { type: 'string', default: '250' },
  },
});

const state = new StateStore();
const ingest = new Ingest(state, {
  orderbookDepth: 20,
  tradesKept: 50,
  terminalOrderRetention: 600_000,
  maxMessageSize: 1024 * 1024,
  maxSymbols: 1000,
});
const subscriber = new Redis(values.redis!, { connectionName: 'bench:naive' });
subscriber.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => {
  try {
    ingest.handleMessage(channel.toString(), message);
  } catch {
    // counted by ingest
  }
});
await subscriber.psubscribe(...INGEST_TOPICS.map((topic) => `${topic}:*`));
setInterval(() => ingest.sweepTerminalOrders(), 1000);

interface Client {
  socket: WebSocket;
  type: ClientType;
  filter: Filter | undefined;
}
const clients = new Set<Client>();

function snapshot(client: Client, timestamp: string): string {
  return JSON.stringify({
    type: 'state_update',
    sequence: state.sequence,
    epoch: state.epoch,
    timestamp,
    data: state.snapshot(client.filter!),
  });
}

const meter = new BaselineMeter();

function tick(type: ClientType): void {
  const started = performance.now();
  const timestamp = new Date().toISOString();
  for (const client of clients) {
    if (client.type !== type || !client.filter) continue;
    client.socket.send(snapshot(client, timestamp));
    meter.sentFrames++;
  }
  // Nobody reads the journal here.
  state.trimJournal(state.sequence);
  meter.tickTimes.record((performance.now() - started) * 1000);
}
setInterval(() => tick('tui'), Number(values['tui-interval']));
setInterval(() => tick('web'), Number(values['web-interval']));

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(values.port),
  perMessageDeflate: false,
  maxPayload: 64 * 1024,
  backlog: 4096,
});
server.on('connection', (socket, request) => {
  const query = new URL(request.url ?? '/', 'http://x').searchParams;
  const client: Client = { socket, type: (query.get('type') ?? 'web') as ClientType, filter: undefined };
  clients.add(client);
  socket.on('message', (data) => {
    const { subscriptions } = JSON.parse(data.toString()) as { subscriptions: string[] };
    const names = subscriptions.map(validateSubscription);
    client.filter = buildFilter(names);
    socket.send(JSON.stringify({ type: 'subscribed', subscriptions: names, sequence: state.sequence }));
    socket.send(snapshot(client, new Date().toISOString()));
  });
  socket.on('close', () => clients.delete(client));
  socket.on('error', () => {});
});

meter.serve(server, () => ({ ingested: ingest.counters.messages.redis }));
