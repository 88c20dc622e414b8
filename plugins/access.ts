import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import fp from 'fastify-plugin';
import { AddressAllowlist, extractToken, OriginAllowlist } from '../src/access.ts';
import { AuthError } from './auth.ts';

declare module 'fastify' {
  interface FastifyInstance {
    access: {
      /** Route options for the /ws upgrade: connection rate limit, origin, capacity and token checks. */
      readonly upgrade: RouteShorthandOptions;
      /** Route options for REST routes that need a token (sets request.principal). */
      readonly withToken: RouteShorthandOptions;
      /** Route options for operations routes: loopback, ops.allowed_cidrs, or an admin token. */
      readonly ops: RouteShorthandOptions;
      /** True once shutdown began: new sockets are refused with 503. */
      draining: boolean;
    };
  }
}

function refuse(reply: FastifyReply, status: number, error: string, message: string): FastifyReply {
  return reply.code(status).send({ error, message });
}

/**
 * Who may reach what: browser origins (upgrade check and REST CORS from one list), per-IP rate limits on
 * connection attempts and REST routes, socket capacity, tokens, and the operations routes' address allowlist.
 */
export default fp(
  async (fastify) => {
    const { websocket, http, ops } = fastify.config;
    const origins = new OriginAllowlist(websocket.allowed_origins);
    const opsAddresses = new AddressAllowlist(ops.allowed_cidrs);

    await fastify.register(cors, {
      origin: (origin, callback) => callback(null, origin === undefined || origins.allows(origin)),
      methods: ['GET'],
    });
    // Only routes given a limiter below are limited: /health and /ready stay open for probes.
    await fastify.register(rateLimit, { global: false });

    // One limiter, so one store keyed by client address, per budget. A per-route `config.rateLimit` would give
    // every route (and the HEAD twin Fastify adds to each GET) a store of its own, so a budget of its own.
    // Each runs in onRequest, before the checks below, so a refused request counts too.
    const httpLimit = fastify.rateLimit({ max: http.rate_limit.max, timeWindow: http.rate_limit.window });
    const connectLimit = fastify.rateLimit({
      max: websocket.connect_rate_limit.max,
      timeWindow: websocket.connect_rate_limit.window,
    });

    async function checkUpgrade(request: FastifyRequest, reply: FastifyReply) {
      const origin = request.headers.origin;
      if (origin === undefined ? websocket.require_origin : !origins.allows(origin)) {
        return refuse(reply, 403, 'forbidden_origin', `origin ${origin ?? '(none)'} is not allowed`);
      }
      if (access.draining) return refuse(reply, 503, 'shutting_down', 'server is shutting down');
      if (fastify.hub.clients.size >= websocket.max_clients) {
        return refuse(
          reply,
          503,
          'server_full',
          `server is at websocket.max_clients (${websocket.max_clients})`,
        );
      }
      try {
        request.principal = fastify.auth.authenticate(request);
      } catch (error) {
        if (!(error instanceof AuthError)) throw error;
        return refuse(reply, 401, error.code, error.message);
      }
      if (
        fastify.auth.enabled &&
        fastify.hub.clientCount(request.principal.userId) >= websocket.max_clients_per_user
      ) {
        return refuse(
          reply,
          429,
          'too_many_connections',
          `user has websocket.max_clients_per_user (${websocket.max_clients_per_user}) connections open`,
        );
      }
    }

    async function requireToken(request: FastifyRequest, reply: FastifyReply) {
      try {
        request.principal = fastify.auth.authenticate(request);
      } catch (error) {
        if (!(error instanceof AuthError)) throw error;
        return refuse(reply, 401, error.code, error.message);
      }
    }

    async function requireOps(request: FastifyRequest, reply: FastifyReply) {
      if (opsAddresses.allows(request.ip)) return;
      const found = extractToken(request.headers, request.url);
      if (found) {
        try {
          const principal = fastify.auth.verify(found.token);
          if (principal.role === 'admin' || !fastify.auth.enabled) return;
        } catch (error) {
          if (!(error instanceof AuthError)) throw error;
        }
      }
      return refuse(
        reply,
        403,
        'forbidden',
        'operations routes are for ops.allowed_cidrs, loopback or an admin token',
      );
    }

    const access = {
      // preValidation, not onRequest: the limiters count in onRequest, and a refused request must count.
      upgrade: { onRequest: connectLimit, preValidation: checkUpgrade },
      withToken: { onRequest: httpLimit, preValidation: requireToken },
      ops: { onRequest: httpLimit, preValidation: requireOps },
      draining: false,
    };
    fastify.decorate('access', access);
  },
  { name: 'access', dependencies: ['config', 'auth', 'hub'] },
);
