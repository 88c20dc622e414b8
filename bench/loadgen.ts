/**
 * A load generator: holds many WebSocket clients of a scenario, driven by the runner over IPC.
 *   {cmd:'connect', urls, kind, clients, secret?, symbols, concurrency} → {evt:'connected', …} (a client connects
 *     to urls[its replica], so one load generator can hold the clients of several hub replicas)
 *   {cmd:'start'} → counters reset, the measurement window opens → {evt:'started'}
 *   {cmd:'stop'}  → {evt:'stats', …} (the window's counts, histograms and samples)
 *   {cmd:'close'} → sockets terminated, exit
 * The receive path is cheap: the sampled clients (~120 per scenario, spread over the connection order) are `ws`
 * clients that decode everything (JSON or MessagePack), check sequences (base_sequence == last sequence) and
 * record publish→receive latency from the `sent_at` (CLOCK_MONOTONIC ms) of each market_data entry they had not
 * seen yet, and tick→receive latency from the message's `timestamp`. Every other client is a raw TCP socket
 * that did the WebSocket handshake itself and only walks frame headers: it counts messages and payload bytes,
 * answers pings (the hub pings clients it sends data to, and closes a silent one) and never copies a payload.
 */
import { randomBytes } from 'node:crypto';
import { type Socket, connect as tcpConnect } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createSigner } from 'fast-jwt';
import { Unpackr } from 'msgpackr';
import WebSocket from 'ws';
import { emptyClassStats, monotonicMs } from './common.ts';
import { Histogram } from './histogram.ts';
import { type ClientSpec, type ClientType, classOf } from './mix.ts';

export interface ClassStats {
  clients: number;
  msgs: number;
  bytes: number;
  sampledClients: number;
  sampledMsgs: number;
  /** diff_update whose base_sequence was not the last sequence applied. */
  lost: number;
  /** A sequence lower than (or, for diffs, equal to) the last one applied. */
  outOfOrder: number;
  /** state_update after the first one (hub: a resync or a too-old journal). */
  extraSnapshots: number;
  errors: number;
}

interface Conn {
  spec: ClientSpec;
  close: () => void;
  subscribe: () => void;
  isOpen: () => boolean;
  stats: ClassStats;
  received: number;
  lastSequence: number | undefined;
  lastSentAt: Map<string, number>;
}

type Kind = 'hub' | 'limit' | 'naive';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

const conns: Conn[] = [];
const classes = new Map<string, ClassStats>();
let kind: Kind = 'hub';
/** false: clients connect and stay unsubscribed until {cmd:'subscribe'} (the idle scenario's first phase). */
let subscribeOnConnect = true;
let measuring = false;
let latency: Record<ClientType, Histogram> = { tui: new Histogram(), web: new Histogram() };
let tickLatency: Record<ClientType, Histogram> = { tui: new Histogram(), web: new Histogram() };
let closes: Record<string, number> = {};
/** A few decoded diffs per class (for the format-size comparison in the report). */
let samples: Record<string, unknown[]> = {};
const SAMPLES_PER_CLASS = 12;

function statsFor(spec: ClientSpec): ClassStats {
  const key = classOf(spec);
  let stats = classes.get(key);
  if (!stats) {
    stats = emptyClassStats();
    classes.set(key, stats);
  }
  return stats;
}

interface Message {
  type: string;
  sequence?: number;
  base_sequence?: number;
  timestamp?: string;
  changes?: Record<string, unknown>;
  data?: Record<string, unknown>;
}

function recordMarketData(conn: Conn, section: unknown, record: boolean): void {
  if (section === null || typeof section !== 'object') return;
  const now = monotonicMs();
  for (const [symbol, value] of Object.entries(section as Record<string, unknown>)) {
    const sentAt = (value as { sent_at?: unknown } | null)?.sent_at;
    if (typeof sentAt !== 'number') continue;
    const last = conn.lastSentAt.get(symbol);
    if (last !== undefined && sentAt <= last) continue;
    conn.lastSentAt.set(symbol, sentAt);
    if (record && last !== undefined) latency[conn.spec.type].record((now - sentAt) * 1000);
  }
}

function onSampledMessage(conn: Conn, data: Buffer, isBinary: boolean): void {
  let message: Message;
  try {
    message = (isBinary ? unpackr.unpack(data) : JSON.parse(data.toString('utf8'))) as Message;
  } catch {
    conn.stats.errors++;
    return;
  }
  const window = measuring;
  if (window) conn.stats.sampledMsgs++;
  switch (message.type) {
    case 'state_update': {
      const first = conn.lastSequence === undefined;
      if (!first && message.sequence! < conn.lastSequence!) {
        if (window) conn.stats.outOfOrder++;
      }
      // The naive server sends nothing but snapshots; for the hub a second snapshot means a resync.
      if (!first && kind !== 'naive' && window) conn.stats.extraSnapshots++;
      conn.lastSequence = message.sequence;
      recordMarketData(conn, message.data?.market_data, window);
      if (window && !first && message.timestamp) recordTick(conn, message.timestamp);
      return;
    }
    case 'diff_update': {
      if (window) {
        if (message.base_sequence !== conn.lastSequence) conn.stats.lost++;
        if (conn.lastSequence !== undefined && message.sequence! <= conn.lastSequence)
          conn.stats.outOfOrder++;
        if (message.timestamp) recordTick(conn, message.timestamp);
        if (kind === 'hub') {
          const key = classOf(conn.spec);
          samples[key] ??= [];
          const list = samples[key];
          if (list.length < SAMPLES_PER_CLASS && Math.random() < 0.05) list.push(message);
        }
      }
      conn.lastSequence = message.sequence;
      recordMarketData(conn, message.changes?.market_data, window);
      return;
    }
    case 'error':
      conn.stats.errors++;
      return;
    default:
      return;
  }
}

function recordTick(conn: Conn, timestamp: string): void {
  const sentAt = Date.parse(timestamp);
  if (Number.isFinite(sentAt)) tickLatency[conn.spec.type].record(Math.max(0, Date.now() - sentAt) * 1000);
}

function connectOne(
  url: string,
  spec: ClientSpec,
  token: string | undefined,
  timeoutMs: number,
): Promise<boolean> {
  return spec.sampled ? connectSampled(url, spec, token, timeoutMs) : connectRaw(url, spec, token, timeoutMs);
}

function queryOf(spec: ClientSpec): string {
  return `type=${spec.type}&format=${spec.format}${kind === 'hub' ? '' : `&bench_set=${spec.set}`}`;
}

function subscribeMessage(spec: ClientSpec): string {
  return JSON.stringify({ action: 'subscribe', subscriptions: spec.subscriptions });
}

function connectSampled(
  url: string,
  spec: ClientSpec,
  token: string | undefined,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new WebSocket(`${url}?${queryOf(spec)}`, {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: timeoutMs,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const stats = statsFor(spec);
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => settle(false), timeoutMs);
    const conn: Conn = {
      spec,
      close: () => socket.terminate(),
      subscribe: () => socket.send(subscribeMessage(spec)),
      isOpen: () => socket.readyState === WebSocket.OPEN,
      stats,
      received: 0,
      lastSequence: undefined,
      lastSentAt: new Map(),
    };
    socket.on('open', () => {
      stats.clients++;
      stats.sampledClients++;
      conns.push(conn);
      if (subscribeOnConnect) conn.subscribe();
      else settle(true);
    });
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (measuring) {
        stats.msgs++;
        stats.bytes += data.length;
      }
      onSampledMessage(conn, data, isBinary);
      // `subscribed`, then the first state_update: ready.
      if (++conn.received === 2) settle(true);
    });
    socket.on('error', () => settle(false));
    socket.on('close', (code: number) => {
      if (measuring) closes[code] = (closes[code] ?? 0) + 1;
      settle(false);
    });
  });
}

const readBuffer = Buffer.alloc(256 * 1024);

/** A client-to-server frame (always masked; a zero mask is as valid as any). */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  const header =
    length < 126
      ? Buffer.from([0x80 | opcode, 0x80 | length])
      : Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 255]);
  return Buffer.concat([header, Buffer.alloc(4), payload]);
}

/**
 * A WebSocket client on a bare TCP socket: sends the upgrade request, skips the 101 response, subscribes, then
 * only parses frame headers (server frames are unmasked): counts each complete message and its payload bytes,
 * answers pings, records close codes.
 */
function connectRaw(
  url: string,
  spec: ClientSpec,
  token: string | undefined,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const target = new URL(url);
    const stats = statsFor(spec);
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => {
      socket.destroy();
      settle(false);
    }, timeoutMs);
    // onread: the bytes are handed to the callback straight from libuv into one shared buffer, without a
    // Buffer allocation or the stream machinery per read (the callback is synchronous, so sharing is safe).
    const socket: Socket = tcpConnect({
      host: target.hostname,
      port: Number(target.port),
      onread: {
        buffer: readBuffer,
        callback: (bytes: number, buffer: Uint8Array) => {
          onData(buffer as Buffer, bytes);
          return true;
        },
      },
    });
    socket.setNoDelay(true);
    const conn: Conn = {
      spec,
      close: () => socket.destroy(),
      subscribe: () => socket.write(clientFrame(1, Buffer.from(subscribeMessage(spec)))),
      isOpen: () => !socket.destroyed,
      stats,
      received: 0,
      lastSequence: undefined,
      lastSentAt: new Map(),
    };
    let upgraded = false;
    let head = '';
    // Frame parser state: bytes of the current header collected so far, payload bytes still to skip.
    const header = Buffer.alloc(14);
    let headerLength = 0;
    let remaining = 0;
    let opcode = 0;
    let fin = false;
    let control: Buffer[] = [];
    let messageBytes = 0;

    const endFrame = () => {
      if (opcode >= 8) {
        const payload = Buffer.concat(control);
        control = [];
        if (opcode === 9) socket.write(clientFrame(10, payload));
        else if (opcode === 8) {
          const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          if (measuring) closes[code] = (closes[code] ?? 0) + 1;
          socket.end();
        }
        return;
      }
      if (!fin) return;
      if (measuring) {
        stats.msgs++;
        stats.bytes += messageBytes;
      }
      messageBytes = 0;
      if (++conn.received === 2) settle(true);
    };

    const onFrames = (chunk: Buffer, start: number, end: number) => {
      let at = start;
      while (at < end) {
        if (remaining > 0) {
          const take = Math.min(remaining, end - at);
          // Copied: the read buffer is reused by the next read.
          if (opcode >= 8) control.push(Buffer.from(chunk.subarray(at, at + take)));
          remaining -= take;
          at += take;
          if (remaining === 0) endFrame();
          continue;
        }
        header[headerLength++] = chunk[at++];
        if (headerLength < 2) continue;
        const short = header[1] & 0x7f;
        const need = short === 126 ? 4 : short === 127 ? 10 : 2;
        if (headerLength < need) continue;
        fin = (header[0] & 0x80) !== 0;
        const frameOpcode = header[0] & 0x0f;
        if (frameOpcode !== 0) opcode = frameOpcode;
        remaining =
          short === 126 ? header.readUInt16BE(2) : short === 127 ? Number(header.readBigUInt64BE(2)) : short;
        headerLength = 0;
        if (opcode < 8) messageBytes += remaining;
        if (remaining === 0) endFrame();
      }
    };

    socket.on('connect', () => {
      const key = randomBytes(16).toString('base64');
      socket.write(
        `GET ${target.pathname}?${queryOf(spec)} HTTP/1.1\r\nHost: ${target.host}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          (token ? `Authorization: Bearer ${token}\r\n` : '') +
          '\r\n',
      );
    });
    const onData = (buffer: Buffer, bytes: number) => {
      if (upgraded) {
        onFrames(buffer, 0, bytes);
        return;
      }
      const before = head.length;
      head += buffer.toString('latin1', 0, bytes);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      if (!head.startsWith('HTTP/1.1 101')) {
        socket.destroy();
        settle(false);
        return;
      }
      upgraded = true;
      stats.clients++;
      conns.push(conn);
      if (subscribeOnConnect) conn.subscribe();
      else settle(true);
      // latin1: one character per byte, so string offsets are byte offsets.
      const consumed = end + 4 - before;
      head = '';
      onFrames(buffer, consumed, bytes);
    };
    socket.on('error', () => settle(false));
    socket.on('close', () => settle(false));
  });
}

interface ConnectCommand {
  cmd: 'connect';
  /** The servers' WebSocket URLs: a client connects to `urls[spec.replica ?? 0]`. */
  urls: string[];
  kind: Kind;
  clients: ClientSpec[];
  secret?: string;
  concurrency: number;
  timeoutMs: number;
  subscribe?: boolean;
}

async function connectAll(command: ConnectCommand): Promise<void> {
  kind = command.kind;
  subscribeOnConnect = command.subscribe ?? true;
  const started = performance.now();
  const sign = command.secret
    ? createSigner({ key: command.secret, algorithm: 'HS256', expiresIn: 3_600_000 })
    : undefined;
  let next = 0;
  let ready = 0;
  let failed = 0;
  const deadline = Date.now() + command.timeoutMs;
  const worker = async () => {
    while (next < command.clients.length && Date.now() < deadline) {
      const spec = command.clients[next++];
      const token = sign?.({ userId: `bench-${spec.index}`, role: 'trader' });
      const url = command.urls[spec.replica ?? 0];
      if (await connectOne(url, spec, token, Math.max(1000, deadline - Date.now()))) ready++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: command.concurrency }, worker));
  failed += command.clients.length - next;
  process.send!({ evt: 'connected', ready, failed, ms: performance.now() - started });
}

/** Subscribes every connected client (paced, 500 at a time), then waits for their snapshots (at most 60 s). */
async function subscribeAll(): Promise<void> {
  for (let i = 0; i < conns.length; i++) {
    conns[i].subscribe();
    if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && conns.some((c) => c.received < 2)) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  process.send!({ evt: 'subscribed', ready: conns.filter((c) => c.received >= 2).length });
}

function snapshotStats() {
  return {
    evt: 'stats',
    classes: Object.fromEntries(classes),
    latency: { tui: latency.tui.toJSON(), web: latency.web.toJSON() },
    tickLatency: { tui: tickLatency.tui.toJSON(), web: tickLatency.web.toJSON() },
    closes,
    open: conns.filter((c) => c.isOpen()).length,
    loopDelayP99Ms: loopDelay.percentile(99) / 1e6,
    loopDelayMaxMs: loopDelay.max / 1e6,
    samples,
  };
}

process.on('message', (message: { cmd: string }) => {
  switch (message.cmd) {
    case 'connect':
      void connectAll(message as ConnectCommand);
      return;
    case 'subscribe':
      void subscribeAll();
      return;
    case 'start':
      for (const stats of classes.values()) {
        stats.msgs = 0;
        stats.bytes = 0;
        stats.sampledMsgs = 0;
        stats.lost = 0;
        stats.outOfOrder = 0;
        stats.extraSnapshots = 0;
        stats.errors = 0;
      }
      latency = { tui: new Histogram(), web: new Histogram() };
      tickLatency = { tui: new Histogram(), web: new Histogram() };
      closes = {};
      samples = {};
      loopDelay.reset();
      measuring = true;
      process.send!({ evt: 'started' });
      return;
    case 'stop':
      measuring = false;
      process.send!(snapshotStats());
      return;
    case 'close':
      for (const conn of conns) conn.close();
      setTimeout(() => process.exit(0), 100);
      return;
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ evt: 'ready' });
