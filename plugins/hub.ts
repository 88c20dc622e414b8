import { once } from 'node:events';
import websocket from '@fastify/websocket';
import fp from 'fastify-plugin';
import { Hub } from '../src/hub/hub.ts';
import { Protocols } from '../src/hub/protocols/index.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The broadcaster: connected clients, their groups, and the per-type broadcast ticks. */
    hub: Hub;
    /** True once shutdown began (the hub's preClose): /ws refuses new sockets, /ready answers 503. */
    readonly draining: boolean;
  }
}

/**
 * How long the shutdown drain waits for clients to close: server.shutdown_timeout less a reserve (a quarter, at
 * most 2 s) for closing Redis and the HTTP server, so that the whole shutdown ends within server.shutdown_timeout.
 */
export function drainTimeout(shutdownTimeout: number): number {
  return shutdownTimeout - Math.min(2000, shutdownTimeout / 4);
}

/** WebSocket support and the broadcaster behind /ws. */
export default fp(
  async (fastify) => {
    const { websocket: ws, broadcast, server } = fastify.config;
    let draining = false;
    fastify.decorate('draining', { getter: () => draining });
    await fastify.register(websocket, {
      // At shutdown: tell every client why (1001) and give them until the drain deadline to close; a client that
      // has not finished the close handshake by then (it stopped reading) is terminated.
      preClose: async () => {
        draining = true;
        hub.stop();
        const signal = AbortSignal.timeout(drainTimeout(server.shutdown_timeout));
        const closed = [...fastify.websocketServer.clients].map((socket) =>
          once(socket, 'close', { signal }),
        );
        hub.closeAll(1001, 'server shutting down');
        await Promise.allSettled(closed);
        for (const socket of fastify.websocketServer.clients) socket.terminate();
      },
      options: {
        maxPayload: ws.max_message_size,
        // Per-connection zlib contexts cost more CPU and memory than the bandwidth they save here.
        perMessageDeflate: false,
        // A browser sends its token as the subprotocol pair `bearer, <jwt>`; the handshake must select `bearer`.
        handleProtocols: (protocols: Set<string>) => (protocols.has('bearer') ? 'bearer' : false),
      },
    });
    const hub = new Hub(fastify.state, {
      intervals: { tui: broadcast.tui_interval, web: broadcast.web_interval },
      sendPhases: broadcast.send_phases,
      pingInterval: ws.ping_interval,
      readTimeout: ws.read_timeout,
      logger: fastify.log,
      maxSubscriptions: ws.max_subscriptions,
      maxBuffered: ws.max_buffered,
      maxLag: ws.max_lag,
      rateLimit: {
        messagesPerSecond: ws.rate_limit.messages_per_second,
        burst: ws.rate_limit.burst,
        maxViolations: ws.rate_limit.max_violations,
        window: ws.rate_limit.window,
      },
      mayRead: fastify.auth.mayRead,
      verifyToken: fastify.auth.enabled ? fastify.auth.verify : undefined,
      protocols: new Protocols({ tuiOrderbookSymbol: fastify.config.legacy.tui_orderbook_symbol }),
      actions: fastify.actions,
    });
    fastify.decorate('hub', hub);
    fastify.addHook('onReady', async () => hub.start());
  },
  { name: 'hub', dependencies: ['config', 'state', 'auth', 'actions'] },
);
