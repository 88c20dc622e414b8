/**
 * The hub's own CPU per delivery, without sockets: the real Hub (src/hub/) with N fake sockets whose
 * send() only counts, one state change per tick, `hub.tick('tui')` timed; against a bare loop that hands the same
 * Buffer to the same fake sockets (what the limit server does). The difference is the hub's bookkeeping per client
 * per tick (cohort keys, stats keys, buffer checks), which the real sockets' ~10 µs writev hides in the full run.
 *   node bench/hub-overhead.ts [--clients 5000] [--ticks 200] [--groups 1]
 */

import { parseCli } from '../src/cli.ts';
import { Hub } from '../src/hub/hub.ts';
import type { ClientSocket } from '../src/hub/session.ts';
import { StateStore } from '../src/state.ts';

const USAGE = `Usage: node bench/hub-overhead.ts [options]
The hub's own CPU per delivery with fake sockets, against a bare send loop.

Options:
  --clients N        fake sockets (default 5000)
  --ticks N          ticks timed (default 200)
  --groups N         subscription groups (default 1)
  -h, --help         this help`;

const { values } = parseCli('hub-overhead', USAGE, {
  options: {
    clients: { type: 'string', default: '5000' },
    ticks: { type: 'string', default: '200' },
    groups: { type: 'string', default: '1' },
  },
});
const clients = Number(values.clients);
const ticks = Number(values.ticks);
const groups = Number(values.groups);

let sent = 0;
class FakeSocket implements ClientSocket {
  readyState = 1;
  bufferedAmount = 0;
  send(): void {
    sent++;
  }
  ping(): void {}
  terminate(): void {}
  close(): void {}
  on(): unknown {
    return this;
  }
}

const state = new StateStore();
const silent = { warn() {}, error() {} };
const hub = new Hub(state, {
  intervals: { tui: 100, web: 250 },
  pingInterval: 30_000,
  readTimeout: 60_000,
  logger: silent,
  maxSubscriptions: 50,
  rateLimit: { messagesPerSecond: 10, burst: 20, maxViolations: 20, window: 10_000 },
  maxBuffered: 1024 * 1024,
  maxLag: 10_000,
});
state.set('market_data', 'SYM0USDT', { symbol: 'SYM0USDT', last_price: 1 });
const sockets: FakeSocket[] = [];
for (let i = 0; i < clients; i++) {
  const socket = new FakeSocket();
  sockets.push(socket);
  const client = hub.connect(socket, 'tui', 'json');
  hub.execute(client, { action: 'subscribe', subscriptions: ['market_data', `orderbook:G${i % groups}`] });
}

function measureHub(): number {
  let total = 0;
  for (let t = 0; t < ticks; t++) {
    state.set('market_data', 'SYM0USDT', { symbol: 'SYM0USDT', last_price: t, sent_at: t });
    const started = process.hrtime.bigint();
    hub.tick('tui');
    total += Number(process.hrtime.bigint() - started);
  }
  return total / ticks;
}

function measureLoop(): number {
  const frame = Buffer.from(JSON.stringify({ type: 'diff_update', changes: { market_data: {} } }));
  let total = 0;
  for (let t = 0; t < ticks; t++) {
    const started = process.hrtime.bigint();
    for (const socket of sockets) socket.send();
    void frame;
    total += Number(process.hrtime.bigint() - started);
  }
  return total / ticks;
}

// Warm up both (JIT), then measure.
measureHub();
measureLoop();
sent = 0;
const hubNs = measureHub();
const deliveries = sent;
const loopNs = measureLoop();
process.stdout.write(
  `${clients} clients in ${groups} group(s), ${ticks} ticks: hub.tick ${(hubNs / 1e6).toFixed(2)} ms per tick = ` +
    `${(hubNs / clients).toFixed(0)} ns per client (${deliveries / ticks} sends per tick); bare loop ${(loopNs / clients).toFixed(0)} ns per client\n`,
);
