import { EventEmitter } from 'node:events';
import fp from 'fastify-plugin';
import { Redis, ReplyError } from 'ioredis';
import { redactUrlCredentials } from '../src/access.ts';
import { ConflatingQueue, type ConflatingQueueStats } from '../src/conflating-queue.ts';
import { logDropped } from '../src/ingest/dropped.ts';
import { PayloadError } from '../src/ingest/schemas.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import { redisOptions } from '../src/redis-connection.ts';
import type { RedisStatus } from '../src/system-status.ts';
import { messageSampled, withSpan } from '../src/tracing.ts';

export type { RedisStatus };

/** What /ready, /debug and the metrics read of the Redis side. */
export interface RedisIngestStatus {
  status: RedisStatus;
  since: string;
  /** Every pattern of `redis.channels` is subscribed on the current connection. */
  subscribed: boolean;
  /** The market data keys were loaded since the connection was last (re)established. */
  loaded: boolean;
  /** How many times the subscriber connection came back after a loss. */
  reconnects: number;
  /** The last connection error, if the connection is not up. */
  lastError?: string;
  /** Snapshot keys skipped by the loads so far, by why (dashboard_redis_snapshot_skipped_total{reason}). */
  snapshotSkipped: Record<SnapshotSkipReason, number>;
}

/**
 * Why a snapshot key was skipped: `invalid` (ingest refused the value: PayloadError), `unreadable` (Redis could not
 * return it as a string or a hash: a list, a stream, a read error), `failed` (anything else thrown applying it).
 */
export type SnapshotSkipReason = 'invalid' | 'unreadable' | 'failed';

declare module 'fastify' {
  interface FastifyInstance {
    redisIngest: {
      readonly info: RedisIngestStatus;
      /** Emits `status` (with the new RedisStatus) and `loaded` (after each snapshot load). */
      readonly events: EventEmitter;
      /** Why the hub is not ready, or undefined when it is. */
      notReadyReason(): string | undefined;
      /** Reloads the snapshot keys; resolves when done. */
      reload(): Promise<void>;
      /** The order books waiting to be ingested, and what was conflated or dropped by topic (/debug, metrics). */
      deferred(): DeferredStats;
    };
  }
}

const SNAPSHOT_PATTERN = 'market_data:*';

export interface DeferredStats extends ConflatingQueueStats {
  /** 0 when books are ingested inline (ingest.orderbook_pending_max_size 0). */
  maxBytes: number;
  conflatedByTopic: Record<string, number>;
  droppedByTopic: Record<string, number>;
}

/** Channels whose messages are deferred: a full order book replaces the previous one, so only the latest matters. */
const DEFERRED_PREFIX = 'orderbook:';
/** Work per event-loop turn: books are ingested until this many bytes were (at least one, up to 1 MiB). */
const DEFERRED_TURN_BYTES = 256 * 1024;
/**
 * After a costly turn, the next waits as long: measured with bench/book-flood.ts (1 MiB books, 2 cores), 0 lets Redis
 * cut the subscriber at a 96 MiB/s flood, 1 holds 160 MiB/s (peak output buffer 20 MiB of 32) at ~6 books/s, 3 holds
 * it too at half the books. Cheap books (under 1 ms a turn) never wait.
 */
const DEFERRED_REST_RATIO = 1;
/** What a pending entry costs beyond its payload (Map entry, Buffer, channel string), counted against the bound. */
const DEFERRED_ENTRY_OVERHEAD = 256;
/** A message applied, when traced (one in 1/tracing.message_sample_ratio, then sampled as any trace). */
const MESSAGE_ATTRIBUTES = { 'messaging.system': 'redis', 'messaging.operation.type': 'process' } as const;

/**
 * The Redis side of ingest: a dedicated subscriber connection feeding every message to `fastify.ingest`,
 * and a second connection that loads the current market data keys at start and after every reconnect.
 */
export default fp(
  async (fastify) => {
    const { redis: config } = fastify.config;
    const { ingest, systemStatus, log } = fastify;
    const subscriber = new Redis(
      config.url,
      redisOptions(config, { connectionName: 'dashboard-server:subscriber' }),
    );
    const reader = new Redis(
      config.url,
      redisOptions(config, { connectionName: 'dashboard-server:reader', maxRetriesPerRequest: 1 }),
    );
    // Without a listener ioredis writes "Unhandled error event" to stderr at every failed reconnect. An outage is
    // reported once, by the subscriber's status; a failed reload logs its own error.
    reader.on('error', () => {});
    const info: RedisIngestStatus = {
      status: 'connecting',
      since: new Date().toISOString(),
      subscribed: false,
      loaded: false,
      reconnects: 0,
      snapshotSkipped: { invalid: 0, unreadable: 0, failed: 0 },
    };
    const invalidLog = new LogThrottle(1000);
    const events = new EventEmitter();
    let everReady = false;
    let closing = false;

    function setStatus(status: RedisStatus, error?: Error): void {
      if (error) info.lastError = error.message;
      if (info.status === status) return;
      const previous = { status: info.status, since: info.since };
      info.status = status;
      info.since = new Date().toISOString();
      events.emit('status', status);
      systemStatus.reportConnection('redis', status, info.since);
      if (status === 'up' && previous.status === 'stalled') {
        delete info.lastError;
        const stalledMs = Date.parse(info.since) - Date.parse(previous.since);
        log.info({ url: redactUrlCredentials(config.url), stalled_ms: stalledMs }, 'redis: answering again');
      } else if (status === 'up') {
        delete info.lastError;
        log.info({ url: redactUrlCredentials(config.url) }, 'redis: connected');
      } else if (status === 'stalled' && !closing) {
        log.warn(
          { url: redactUrlCredentials(config.url), err: info.lastError },
          'redis: not answering; serving last known state',
        );
      } else if (status === 'down' && !closing) {
        log.warn(
          { url: redactUrlCredentials(config.url), err: info.lastError },
          'redis: connection lost; serving last known state',
        );
      }
    }

    const conflatedByTopic: Record<string, number> = {};
    const droppedByTopic: Record<string, number> = {};
    const topicOf = (channel: string) => channel.slice(0, channel.indexOf(':'));
    const pendingMax = fastify.config.ingest.orderbook_pending_max_size;
    // Order books are ingested off the socket's read path: ioredis calls this handler for every message as it
    // parses what it read, so a book ingested inline (~55 ms for 1 MiB) holds the subscriber socket unread, and
    // Redis cuts a subscriber whose output buffer passes 32 MB. Queued, the latest book per channel wins, each
    // turn ingests a bounded amount, and after a costly turn the next waits as long: under a flood at least half
    // the time is left to reading the socket.
    const deferred =
      pendingMax > 0
        ? new ConflatingQueue<Buffer>({
            maxBytes: pendingMax,
            turnBytes: DEFERRED_TURN_BYTES,
            restRatio: DEFERRED_REST_RATIO,
            handle: ingestMessage,
            onConflate: (key) => {
              const topic = topicOf(key);
              conflatedByTopic[topic] = (conflatedByTopic[topic] ?? 0) + 1;
            },
            onDrop: (key) => {
              const topic = topicOf(key);
              droppedByTopic[topic] = (droppedByTopic[topic] ?? 0) + 1;
              if (invalidLog.allow(`deferred:${topic}`) !== undefined) {
                log.warn(
                  { channel: key, max: pendingMax },
                  'ingest: pending book dropped: ingest.orderbook_pending_max_size reached',
                );
              }
            },
          })
        : undefined;

    subscriber.on('pmessageBuffer', (_pattern: string, channel: Buffer, message: Buffer) => {
      const name = channel.toString();
      if (deferred && name.startsWith(DEFERRED_PREFIX)) {
        // A small message may be a view of the parser's whole read buffer: a pending copy pins only itself.
        const own = message.byteLength * 2 < message.buffer.byteLength ? Buffer.from(message) : message;
        deferred.push(name, own, own.byteLength + name.length + DEFERRED_ENTRY_OVERHEAD);
      } else ingestMessage(name, message);
    });

    /** Ingests one message; nothing a publisher sends may throw out of here. */
    function ingestMessage(name: string, message: Buffer): void {
      try {
        if (!messageSampled()) ingest.handleMessage(name, message);
        else
          withSpan(
            `ingest ${topicOf(name)}`,
            { ...MESSAGE_ATTRIBUTES, 'messaging.destination.name': name, 'dashboard.topic': topicOf(name) },
            () => ingest.handleMessage(name, message),
            { root: true },
          );
      } catch (error) {
        // Nothing a publisher sends may take the hub down: an unexpected failure drops that message too.
        logDropped(log, invalidLog, { channel: name }, error);
      }
    }
    subscriber.on('error', (error: Error) => {
      info.lastError = error.message;
    });
    subscriber.on('close', () => {
      info.subscribed = false;
      info.loaded = false;
      setStatus('down');
    });
    subscriber.on('ready', () => {
      if (everReady) info.reconnects++;
      everReady = true;
      setStatus('up');
      // ioredis resubscribes on its own after a reconnect; the first time, subscribe here.
      const subscribed =
        info.reconnects === 0 ? subscriber.psubscribe(...config.channels) : Promise.resolve();
      subscribed
        .then(() => {
          info.subscribed = true;
          return reload();
        })
        .catch((error: Error) =>
          log.warn({ err: error.message }, 'redis: subscribe or snapshot load failed'),
        );
    });

    // A Redis that stops answering keeps its sockets open: nothing closes, ioredis sees no error. A PING on the
    // reader connection every health_check_interval tells: no reply within health_check_timeout marks Redis
    // stalled until one comes. The reader, not the subscriber: behind a burst of messages a PONG on the subscriber
    // is late without anything being wrong, and a quiet market sends nothing, so silence there proves nothing.
    let pingInFlight = false;
    let healthTimer: NodeJS.Timeout | undefined;

    async function checkHealth(): Promise<void> {
      // One PING at a time: while Redis is frozen the one sent waits, and its reply is the recovery.
      if (pingInFlight || closing || (info.status !== 'up' && info.status !== 'stalled')) return;
      pingInFlight = true;
      const timeoutMs = config.health_check_timeout;
      let timer: NodeJS.Timeout | undefined;
      // Decided after one more I/O poll: after a long blocked turn (GC, a large book) the timer and the reply are
      // both due, and timers run first; a reply already read is not a stall.
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => setImmediate(() => resolve('timeout')), timeoutMs);
      });
      const ping = reader.ping().then(
        () => 'ok' as const,
        (error: Error) => error,
      );
      try {
        const first = await Promise.race([ping, timedOut]);
        clearTimeout(timer);
        // An error reply (BUSY: a long script; LOADING) is Redis not serving too. A connection error is not a
        // stall: the subscriber, on the same server, reports the connection itself (down).
        if (info.status === 'up' && first === 'timeout') {
          setStatus('stalled', new Error(`no reply to PING within ${timeoutMs}ms`));
        } else if (info.status === 'up' && first instanceof ReplyError) {
          setStatus('stalled', new Error(`PING failed: ${(first as Error).message}`));
        }
        const result = first === 'timeout' ? await ping : first;
        // Only a stall ends here: a lost subscriber connection comes back through its own 'ready'.
        if (result === 'ok' && info.status === 'stalled' && !closing) setStatus('up');
      } finally {
        pingInFlight = false;
      }
    }

    /**
     * Loads every snapshot key. The keys outlive restarts, so one that cannot be read or applied, for whatever
     * reason, is skipped, counted and logged (one line per reason a second), and the load goes on: a bad key must
     * never keep the hub from turning ready. Only losing the connection fails the load.
     */
    async function reload(): Promise<void> {
      info.loaded = false;
      let keys = 0;
      let skipped = 0;
      const stream = reader.scanStream({ match: SNAPSHOT_PATTERN, count: 500 });
      for await (const batch of stream as AsyncIterable<string[]>) {
        if (batch.length === 0) continue;
        const replies = await reader.pipeline(batch.map((key) => ['get', key])).exec();
        for (const [index, key] of batch.entries()) {
          const [error, value] = replies?.[index] ?? [];
          let text: string | null;
          try {
            text = error ? await readHash(key) : (value as string | null);
          } catch (failure) {
            // A lost connection is not this key's fault: the load fails, and runs again on the reconnect.
            if (!(failure instanceof ReplyError)) throw failure;
            skipSnapshotKey(key, 'unreadable', failure);
            skipped++;
            continue;
          }
          // Deleted between SCAN and GET.
          if (text === null) continue;
          try {
            ingest.handleMessage(key, text);
            keys++;
          } catch (failure) {
            skipSnapshotKey(key, failure instanceof PayloadError ? 'invalid' : 'failed', failure);
            skipped++;
          }
        }
      }
      info.loaded = true;
      events.emit('loaded');
      log.info({ keys, skipped }, 'redis: market data snapshot loaded');
    }

    function skipSnapshotKey(key: string, reason: SnapshotSkipReason, failure: unknown): void {
      info.snapshotSkipped[reason]++;
      const suppressed = invalidLog.allow(`snapshot:${reason}`);
      if (suppressed === undefined) return;
      if (reason === 'failed')
        log.error({ key, reason, suppressed, err: failure }, 'redis: skipped snapshot key');
      else {
        const message = failure instanceof Error ? failure.message : String(failure);
        log.warn({ key, reason, suppressed, err: message }, 'redis: skipped snapshot key');
      }
    }

    /** A market data key stored as a hash instead of a JSON string; throws if it is neither (WRONGTYPE). */
    async function readHash(key: string): Promise<string | null> {
      const fields = await reader.hgetall(key);
      return Object.keys(fields).length === 0 ? null : JSON.stringify(fields);
    }

    fastify.decorate('redisIngest', {
      info,
      events,
      notReadyReason() {
        if (info.status !== 'up')
          return `redis is ${info.status}${info.lastError ? `: ${info.lastError}` : ''}`;
        if (!info.subscribed) return 'redis subscription pending';
        if (!info.loaded) return 'initial snapshot load pending';
        return undefined;
      },
      reload,
      deferred: () => ({
        ...(deferred?.stats ?? {
          pending: 0,
          pendingBytes: 0,
          conflated: 0,
          dropped: 0,
          handled: 0,
          turns: 0,
        }),
        maxBytes: pendingMax,
        conflatedByTopic,
        droppedByTopic,
      }),
    });

    fastify.addHook('onReady', async () => {
      // Start without waiting: the hub serves (empty or last known) state and /ready says why it is not ready.
      subscriber.connect().catch((error: Error) => setStatus('down', error));
      healthTimer = setInterval(() => void checkHealth(), config.health_check_interval);
      healthTimer.unref();
    });
    fastify.addHook('onClose', async () => {
      closing = true;
      clearInterval(healthTimer);
      deferred?.close();
      subscriber.disconnect();
      reader.disconnect();
    });
  },
  { name: 'redis-ingest', dependencies: ['config', 'state'] },
);
