import { EventEmitter } from 'node:events';
import fp from 'fastify-plugin';
import { Redis, type RedisOptions } from 'ioredis';
import { PayloadError } from '../src/ingest.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import type { JsonObject } from '../src/merge-patch.ts';
import { SINGLE } from '../src/state.ts';

export type RedisStatus = 'connecting' | 'up' | 'down';

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
}

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
    };
  }
}

const SNAPSHOT_PATTERN = 'market_data:*';

/**
 * The Redis side of ingest: a dedicated subscriber connection feeding every message to `fastify.ingest`,
 * and a second connection that loads the current market data keys at start and after every reconnect.
 */
export default fp(
  async (fastify) => {
    const { redis: config } = fastify.config;
    const { ingest, state, log } = fastify;
    const options: RedisOptions = {
      db: config.db,
      lazyConnect: true,
      // Reconnect forever with a capped backoff: the hub serves the last known state meanwhile.
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5000),
    };
    const subscriber = new Redis(config.url, { ...options, connectionName: 'dashboard-server:subscriber' });
    const reader = new Redis(config.url, {
      ...options,
      connectionName: 'dashboard-server:reader',
      maxRetriesPerRequest: 1,
    });
    // Without a listener ioredis writes "Unhandled error event" to stderr at every failed reconnect. An outage is
    // reported once, by the subscriber's status; a failed reload logs its own error.
    reader.on('error', () => {});
    const info: RedisIngestStatus = {
      status: 'connecting',
      since: new Date().toISOString(),
      subscribed: false,
      loaded: false,
      reconnects: 0,
    };
    const invalidLog = new LogThrottle(1000);
    const events = new EventEmitter();
    let everReady = false;
    let closing = false;

    function setStatus(status: RedisStatus, error?: Error): void {
      if (error) info.lastError = error.message;
      if (info.status === status) return;
      info.status = status;
      info.since = new Date().toISOString();
      events.emit('status', status);
      const system = state.get('system') as JsonObject;
      state.set('system', SINGLE, { ...system, redis: { status, since: info.since } });
      if (status === 'up') {
        delete info.lastError;
        log.info({ url: redactUrl(config.url) }, 'redis: connected');
      } else if (status === 'down' && !closing) {
        log.warn(
          { url: redactUrl(config.url), err: info.lastError },
          'redis: connection lost; serving last known state',
        );
      }
    }

    subscriber.on('pmessageBuffer', (_pattern: string, channel: Buffer, message: Buffer) => {
      const name = channel.toString();
      try {
        ingest.handleMessage(name, message);
      } catch (error) {
        // Nothing a publisher sends may take the hub down: an unexpected failure drops that message too.
        const topic = error instanceof PayloadError ? error.topic : 'unexpected';
        const suppressed = invalidLog.allow(topic);
        if (suppressed === undefined) return;
        if (error instanceof PayloadError) {
          log.warn({ channel: name, suppressed }, `ingest: dropped message: ${error.message}`);
        } else {
          log.error({ channel: name, suppressed, err: error }, 'ingest: message handling failed; dropped');
        }
      }
    });
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

    async function reload(): Promise<void> {
      info.loaded = false;
      let keys = 0;
      const stream = reader.scanStream({ match: SNAPSHOT_PATTERN, count: 500 });
      for await (const batch of stream as AsyncIterable<string[]>) {
        if (batch.length === 0) continue;
        const replies = await reader.pipeline(batch.map((key) => ['get', key])).exec();
        for (const [index, key] of batch.entries()) {
          const [error, value] = replies?.[index] ?? [];
          const text = error ? await readHash(key) : (value as string | null);
          if (text === null) continue;
          try {
            ingest.handleMessage(key, text);
            keys++;
          } catch (failure) {
            if (!(failure instanceof PayloadError)) throw failure;
            if (invalidLog.allow(`snapshot:${key}`) !== undefined) {
              log.warn({ key }, `redis: skipped snapshot key: ${failure.message}`);
            }
          }
        }
      }
      info.loaded = true;
      events.emit('loaded');
      log.info({ keys }, 'redis: market data snapshot loaded');
    }

    /** A market data key stored as a hash instead of a JSON string. */
    async function readHash(key: string): Promise<string | null> {
      const fields = await reader.hgetall(key).catch(() => ({}));
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
    });

    fastify.addHook('onReady', async () => {
      // Start without waiting: the hub serves (empty or last known) state and /ready says why it is not ready.
      subscriber.connect().catch((error: Error) => setStatus('down', error));
    });
    fastify.addHook('onClose', async () => {
      closing = true;
      subscriber.disconnect();
      reader.disconnect();
    });
  },
  { name: 'redis-ingest', dependencies: ['config', 'state'] },
);

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, '//***@');
}
