import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import accessPlugin from '../plugins/access.ts';
import actionsPlugin from '../plugins/actions.ts';
import adminPlugin from '../plugins/admin.ts';
import authPlugin from '../plugins/auth.ts';
import configPlugin from '../plugins/config.ts';
import errorsPlugin, { clientErrorHandler } from '../plugins/errors.ts';
import fleetLimitsPlugin from '../plugins/fleet-limits.ts';
import historyPlugin from '../plugins/history.ts';
import hubPlugin from '../plugins/hub.ts';
import leaderPlugin from '../plugins/leader.ts';
import metricsPlugin from '../plugins/metrics.ts';
import natsIngestPlugin from '../plugins/nats-ingest.ts';
import openapiPlugin from '../plugins/openapi.ts';
import pollerPlugin from '../plugins/poller.ts';
import redisIngestPlugin from '../plugins/redis-ingest.ts';
import statePlugin from '../plugins/state.ts';
import tracingPlugin from '../plugins/tracing.ts';
import historyRoutes from '../routes/api/history.ts';
import stateRoute from '../routes/api/state.ts';
import debugRoute from '../routes/debug.ts';
import healthRoutes from '../routes/health.ts';
import wsRoute from '../routes/ws.ts';
import { redactTokenInUrl } from './access.ts';
import type { Config } from './config/schema.ts';

export interface BuildOptions {
  /** `false` turns logging off (tests). */
  logger?: false;
  /** Where log lines go instead of stdout (tests that read the log). */
  logStream?: NodeJS.WritableStream;
}

/** Builds the whole service, every plugin and route in the order they depend on each other. */
export async function buildApp(
  config: Config,
  { logger, logStream }: BuildOptions = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    logger:
      logger === false
        ? false
        : {
            level: config.server.log_level,
            ...(logStream ? { stream: logStream } : {}),
            // Tokens travel in three places; none of them may reach a log line.
            redact: {
              paths: ['req.headers.authorization', 'req.headers["sec-websocket-protocol"]'],
              censor: '***',
            },
            serializers: {
              // Fastify's own request serializer, with ?token= masked: browsers may send their JWT that way.
              req: (request: FastifyRequest) => ({
                method: request.method,
                url: redactTokenInUrl(request.url),
                host: request.host,
                remoteAddress: request.ip,
                remotePort: request.socket?.remotePort,
              }),
            },
          },
    // Clients reconnect at once after a restart; the hub closes their sockets itself at shutdown.
    forceCloseConnections: true,
    // A request Node's parser refuses gets the same `{error, message}` body as every other error.
    clientErrorHandler,
    // Avvio's timeout also bounds each close hook: server.shutdown_timeout must be the only limit on the drain.
    pluginTimeout: Math.max(10_000, config.server.shutdown_timeout),
    // Fastify's own 503 while closing answers before any route hook: /ws refuses with `shutting_down` and
    // /ready with `not_ready` themselves (fastify.draining), every other route keeps answering during the drain.
    return503OnClosing: false,
    // request.ip (rate limits, the ops allowlist, auth.anonymous, logs) is the socket's peer, or, when that peer is
    // a listed proxy, the address it forwards in X-Forwarded-For. Fastify would build a trusting request class
    // even for an empty array: no list is `false`. The config never yields `true` (a list of CIDRs, none /0).
    trustProxy: config.server.trust_proxy.length > 0 ? [...config.server.trust_proxy] : false,
  });
  // Before everything: @fastify/otel sees every route and hook added after it; closed last, it exports the spans of
  // the other plugins' closing. Off (no tracing.endpoint), it only decorates `tracing`.
  await app.register(tracingPlugin, { config: config.tracing });
  // Then: every plugin and route after it inherits its error and not-found handlers.
  await app.register(errorsPlugin);
  await app.register(configPlugin, { config });
  await app.register(statePlugin);
  await app.register(redisIngestPlugin);
  // Which replica of the fleet polls the backends and writes history; the others apply what it relays.
  await app.register(leaderPlugin);
  await app.register(pollerPlugin);
  await app.register(natsIngestPlugin);
  await app.register(historyPlugin);
  await app.register(actionsPlugin);
  await app.register(authPlugin);
  await app.register(hubPlugin);
  // websocket.global_limits: the access check's per-user count across the replicas, in Redis.
  await app.register(fleetLimitsPlugin);
  await app.register(accessPlugin);
  // Before every route it documents (/metrics included): @fastify/swagger collects routes as they are added.
  await app.register(openapiPlugin);
  await app.register(metricsPlugin);
  await app.register(healthRoutes);
  await app.register(debugRoute);
  // The admin page (/admin, and / redirecting to it): the access rule of /debug, which it polls.
  await app.register(adminPlugin);
  await app.register(stateRoute);
  await app.register(historyRoutes);
  await app.register(wsRoute);
  return app;
}
