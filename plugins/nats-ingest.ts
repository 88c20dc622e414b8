import { EventEmitter } from 'node:events';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import fp from 'fastify-plugin';
import { redactUrlCredentials } from '../src/access.ts';
import { logDropped } from '../src/ingest/dropped.ts';
import { LogThrottle } from '../src/log-throttle.ts';
import type { NatsStatus } from '../src/system-status.ts';
import type { IngestTopic } from '../src/topics.ts';
import { messageSampled, withSpan } from '../src/tracing.ts';

export type { NatsStatus };

/** What /ready, /debug and the metrics read of the NATS side. */
export interface NatsIngestStatus {
  /** `nats.url` is set: without it there is no connection and nothing here changes. */
  enabled: boolean;
  /** `off` when not configured. */
  status: NatsStatus | 'off';
  since: string;
  /** The server of the current connection (`host:port`), while up. */
  server?: string;
  /** How many times the connection came back after a loss (the client's reconnects and new connections). */
  reconnects: number;
  /** The last connection error, if any since the connection was last up. */
  lastError?: string;
  /** Subject subscribed → the ingest topic its messages go to. */
  subjects: Record<string, IngestTopic>;
}

declare module 'fastify' {
  interface FastifyInstance {
    natsIngest: {
      readonly info: NatsIngestStatus;
      /** Emits `status` (with the new NatsStatus). */
      readonly events: EventEmitter;
      /** Why the hub is not ready on the NATS side, or undefined (always, when NATS is not configured). */
      notReadyReason(): string | undefined;
    };
  }
}

/**
 * The servers of `nats.url` without their credentials, and the credentials as the client takes them (it ignores
 * those in a URL): `user:password@` as user and password, a lone `token@` as a token. The first server's win.
 */
export function natsServers(url: string): {
  servers: string[];
  credentials: { user?: string; pass?: string; token?: string };
} {
  let credentials: { user?: string; pass?: string; token?: string } = {};
  const servers = url.split(',').map((text) => {
    const server = new URL(text.trim());
    if (server.username && Object.keys(credentials).length === 0) {
      const user = decodeURIComponent(server.username);
      credentials = server.password ? { user, pass: decodeURIComponent(server.password) } : { token: user };
    }
    return `${server.protocol}//${server.host}`;
  });
  return { servers, credentials };
}

/**
 * Between two attempts at connecting (a first connection, a new one after the client gave up, or the client's own
 * reconnects after a loss): doubling from the first to the cap, reset once connected.
 */
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;
/** Longest wait for a server's handshake before the attempt counts as failed. */
const CONNECT_TIMEOUT_MS = 5000;
/** A message applied, when traced (one in 1/tracing.message_sample_ratio, then sampled as any trace). */
const MESSAGE_ATTRIBUTES = { 'messaging.system': 'nats', 'messaging.operation.type': 'process' } as const;

/**
 * The NATS side of ingest: one connection subscribed to the subjects of `nats.subjects`, each message handed to
 * `fastify.ingest` under its topic (source `nats`). Off unless `nats.url` is set. NATS core keeps nothing for a
 * subscriber that was away: after every (re)connection the poller refreshes orders and risk.
 */
export default fp(
  async (fastify) => {
    const { nats: config } = fastify.config;
    const { ingest, systemStatus, log } = fastify;
    const { subjects } = config;
    const info: NatsIngestStatus = {
      enabled: config.url !== undefined,
      status: config.url === undefined ? 'off' : 'connecting',
      since: new Date().toISOString(),
      reconnects: 0,
      subjects: {
        [subjects.orders]: 'orders',
        [subjects.fills]: 'fills',
        [subjects.alerts]: 'alerts',
        [subjects.risk_metrics]: 'risk',
        [subjects.risk_alerts]: 'alerts',
      },
    };
    const events = new EventEmitter();
    fastify.decorate('natsIngest', {
      info,
      events,
      notReadyReason() {
        if (!info.enabled || info.status === 'up') return undefined;
        return `nats is ${info.status}${info.lastError ? `: ${info.lastError}` : ''}`;
      },
    });
    if (config.url === undefined) return;
    const url = config.url;
    const { servers, credentials } = natsServers(url);
    const invalidLog = new LogThrottle(1000);
    let connection: NatsConnection | undefined;
    let closing = false;
    let everUp = false;
    let retryTimer: NodeJS.Timeout | undefined;
    let retryDelay = RETRY_FIRST_MS;
    /** When the current connection was lost (the client's reconnect backoff grows with the outage). */
    let lostAt: number | undefined;

    function setStatus(status: NatsStatus, error?: unknown): void {
      if (error !== undefined) info.lastError = error instanceof Error ? error.message : String(error);
      if (info.status === status) return;
      info.status = status;
      info.since = new Date().toISOString();
      systemStatus.reportConnection('nats', status, info.since);
      events.emit('status', status);
      if (status === 'up') {
        delete info.lastError;
        info.server = connection?.getServer();
        log.info({ url: redactUrlCredentials(url), server: info.server }, 'nats: connected');
        if (everUp) info.reconnects++;
        everUp = true;
        // What was published while the hub was away is gone: ask the backends for the current orders and risk.
        fastify.poller.refresh('order_execution', 'risk_manager');
      } else if (status === 'down' && !closing) {
        delete info.server;
        log.warn(
          { url: redactUrlCredentials(url), err: info.lastError },
          everUp ? 'nats: connection lost; serving last known state' : 'nats: cannot connect; retrying',
        );
      }
    }

    /** Hands one message to ingest under `topic`; nothing a publisher sends may throw out of here. */
    function ingestMessage(topic: IngestTopic, message: Msg): void {
      try {
        const { data } = message;
        const payload = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
        if (!messageSampled()) ingest.handleMessage(topic, payload, 'nats');
        else
          withSpan(
            `ingest ${topic}`,
            {
              ...MESSAGE_ATTRIBUTES,
              'messaging.destination.name': message.subject,
              'dashboard.topic': topic,
            },
            () => ingest.handleMessage(topic, payload, 'nats'),
            { root: true },
          );
      } catch (error) {
        logDropped(log, invalidLog, { subject: message.subject }, error);
      }
    }

    async function watch(nc: NatsConnection): Promise<void> {
      for await (const event of nc.status()) {
        if (event.type === 'disconnect' || event.type === 'staleConnection') {
          lostAt ??= Date.now();
          setStatus('down');
        } else if (event.type === 'reconnect') {
          lostAt = undefined;
          setStatus('up');
        } else if (event.type === 'error') info.lastError = event.error.message;
      }
    }

    /** One connection attempt; on failure (or when the client gives up later) the next is scheduled. */
    async function open(): Promise<void> {
      retryTimer = undefined;
      if (closing) return;
      let nc: NatsConnection;
      try {
        nc = await connect({
          servers,
          ...credentials,
          name: 'dashboard-server',
          timeout: CONNECT_TIMEOUT_MS,
          maxReconnectAttempts: -1,
          // The client asks for the delay on every pass of its loop, waiting ones included, and dials once the
          // last attempt is that old: half the outage so far means the next attempt when the outage has doubled
          // (within bounds), however often it asks.
          reconnectDelayHandler: () => {
            lostAt ??= Date.now();
            return Math.min(RETRY_MAX_MS, Math.max(RETRY_FIRST_MS, (Date.now() - lostAt) / 2));
          },
          pingInterval: config.ping_interval,
          maxPingOut: 2,
        });
      } catch (error) {
        setStatus('down', error);
        if (!closing) retryTimer = setTimeout(() => void open(), retryDelay);
        retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
        return;
      }
      if (closing) {
        await nc.close();
        return;
      }
      connection = nc;
      retryDelay = RETRY_FIRST_MS;
      // The first connection asked the delay handler too.
      lostAt = undefined;
      for (const [subject, topic] of Object.entries(info.subjects)) {
        nc.subscribe(subject, {
          callback: (error, message) => {
            if (!error) ingestMessage(topic, message);
            // A subscription the server refused (permissions): said once a second at most, and in /debug.
            else if (invalidLog.allow(`subscription:${subject}`) !== undefined) {
              info.lastError = error.message;
              log.warn({ subject, err: error.message }, 'nats: subscription failed');
            }
          },
        });
      }
      void watch(nc);
      setStatus('up');
      // The client reconnects on its own; it closes only when told to, or on an error it will not retry past
      // (an authorization refused twice): then start over, as at the first connection.
      void nc.closed().then((error) => {
        connection = undefined;
        if (closing) return;
        setStatus('down', error ?? new Error('connection closed'));
        retryTimer = setTimeout(() => void open(), retryDelay);
      });
    }

    fastify.addHook('onReady', async () => {
      systemStatus.reportConnection('nats', 'connecting', info.since);
      void open();
    });
    fastify.addHook('onClose', async () => {
      closing = true;
      clearTimeout(retryTimer);
      await connection?.close();
    });
  },
  { name: 'nats-ingest', dependencies: ['config', 'state', 'poller'] },
);
