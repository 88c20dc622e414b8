import { isIP } from 'node:net';
import { hostname } from 'node:os';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest, onRequestAsyncHookHandler, RouteShorthandOptions } from 'fastify';
import fp from 'fastify-plugin';
import { AddressAllowlist, extractToken, OriginAllowlist } from '../src/access.ts';
import { errorResponses, HttpError } from '../src/errors.ts';
import { AuthError } from './auth.ts';

/** How each check below reads in the OpenAPI document (plugins/openapi.ts): who may call, and each refusal. */
const REFUSED_TOKEN = 'missing_token, invalid_token or token_expired: no token, or one refused';
const RATE_LIMITED =
  'rate_limited: past http.rate_limit from this address (one budget for every limited route)';
type Security = Record<string, string[]>[];
export const ACCESS_DOCS = {
  /** `fastify.access.upgrade`: the /ws upgrade's own limit, origin, capacity and token checks. */
  upgrade: {
    security: [{ bearerAuth: [] }, { tokenQuery: [] }] as Security,
    response: errorResponses({
      401: REFUSED_TOKEN,
      403: 'forbidden_origin: a browser Origin not in websocket.allowed_origins (or none, with require_origin)',
      429: 'rate_limited: past websocket.connect_rate_limit from this address; too_many_connections: the user has websocket.max_clients_per_user sockets open',
      503: 'server_full: websocket.max_clients sockets are open; shutting_down: the server is draining',
    }),
  },
  /** `fastify.access.withToken`: a JWT, or none from an address of auth.anonymous. */
  withToken: {
    security: [{ bearerAuth: [] }, { tokenQuery: [] }] as Security,
    response: errorResponses({ 401: REFUSED_TOKEN, 429: RATE_LIMITED }),
  },
  /** `fastify.access.ops`: no token from loopback or ops.allowed_cidrs, an admin token from elsewhere. */
  ops: {
    security: [{}, { bearerAuth: [] }, { tokenQuery: [] }] as Security,
    response: errorResponses({
      403: 'forbidden: not from loopback or ops.allowed_cidrs, and no admin token',
      429: RATE_LIMITED,
    }),
  },
  /** `fastify.access.limited`: anyone, within the REST budget. */
  limited: { response: errorResponses({ 429: RATE_LIMITED }) },
};

declare module 'fastify' {
  interface FastifyInstance {
    access: {
      /** Route options for the /ws upgrade: connection rate limit, origin, capacity and token checks. */
      readonly upgrade: RouteShorthandOptions;
      /** Route options for REST routes that need a token (sets request.principal). */
      readonly withToken: RouteShorthandOptions;
      /** Route options for operations routes: loopback, ops.allowed_cidrs, or an admin token. */
      readonly ops: RouteShorthandOptions;
      /** Route options for public routes that still count against http.rate_limit (the API reference). */
      readonly limited: { onRequest: onRequestAsyncHookHandler };
    };
  }
}

/**
 * Who may reach what: browser origins (upgrade check and REST CORS from one list), per-IP rate limits on
 * connection attempts and REST routes, socket capacity, tokens, and the operations routes' address allowlist.
 * A refusal is thrown as an HttpError; plugins/errors.ts sends it.
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
    await fastify.register(rateLimit, {
      global: false,
      // Thrown, so plugins/errors.ts sends it in the shape of every other error.
      errorResponseBuilder: (_request, context) =>
        new HttpError('rate_limited', `rate limit exceeded, retry in ${context.after}`),
    });

    // One limiter, so one store keyed by client address, per budget. A per-route `config.rateLimit` would give
    // every route (and the HEAD twin Fastify adds to each GET) a store of its own, so a budget of its own.
    // Each runs in onRequest, before the checks below, so a refused request counts too.
    const httpLimit = fastify.rateLimit({ max: http.rate_limit.max, timeWindow: http.rate_limit.window });
    const connectLimit = fastify.rateLimit({
      max: websocket.connect_rate_limit.max,
      timeWindow: websocket.connect_rate_limit.window,
    });

    async function checkUpgrade(request: FastifyRequest) {
      const origin = request.headers.origin;
      if (origin === undefined ? websocket.require_origin : !origins.allows(origin)) {
        throw new HttpError('forbidden_origin', `origin ${origin ?? '(none)'} is not allowed`);
      }
      if (fastify.draining) throw new HttpError('shutting_down', 'server is shutting down');
      if (fastify.hub.clients.size >= websocket.max_clients) {
        throw new HttpError('server_full', `server is at websocket.max_clients (${websocket.max_clients})`);
      }
      // Throws AuthError (401).
      request.principal = fastify.auth.authenticate(request);
      if (
        fastify.auth.enabled &&
        fastify.hub.clientCount(request.principal.userId) >= websocket.max_clients_per_user
      ) {
        throw new HttpError(
          'too_many_connections',
          `user has websocket.max_clients_per_user (${websocket.max_clients_per_user}) connections open`,
        );
      }
      // websocket.global_limits: the replicas' count together, in Redis (behind the cheap check above). Awaited here,
      // before the 101: simultaneous upgrades on any replicas never pass the limit together.
      if (
        fastify.auth.enabled &&
        fastify.fleetLimits.enabled &&
        !(await fastify.fleetLimits.admit(request, request.principal.userId, websocket.max_clients_per_user))
      ) {
        throw new HttpError(
          'too_many_connections',
          `user has websocket.max_clients_per_user (${websocket.max_clients_per_user}) connections open across the replicas`,
        );
      }
    }

    async function requireToken(request: FastifyRequest) {
      // Throws AuthError (401).
      request.principal = fastify.auth.authenticate(request);
    }

    // Access granted by address trusts the network path, not the page: a browser page whose name was rebound to the
    // hub's address (DNS rebinding, e.g. through an operator's SSH tunnel) comes from loopback with its own name in
    // Host. Only names that are this host's, or listed, are believed.
    const opsHosts = new Set(
      ['localhost', hostname(), ...fastify.config.ops.allowed_hosts].map((name) => name.toLowerCase()),
    );
    const hostAllowed = (host: string) => isIP(host) !== 0 || opsHosts.has(host.toLowerCase());

    async function requireOps(request: FastifyRequest) {
      if (opsAddresses.allows(request.ip) && hostAllowed(request.hostname.replace(/^\[|\]$/g, ''))) return;
      const found = extractToken(request.headers, request.url);
      if (found) {
        try {
          const principal = fastify.auth.verify(found.token);
          if (principal.role === 'admin' || !fastify.auth.enabled) return;
        } catch (error) {
          if (!(error instanceof AuthError)) throw error;
        }
      }
      throw new HttpError(
        'forbidden',
        "operations routes are for ops.allowed_cidrs, loopback (by this host's name or address, or ops.allowed_hosts) or an admin token",
      );
    }

    const access = {
      // preValidation, not onRequest: the limiters count in onRequest, and a refused request must count.
      upgrade: { onRequest: connectLimit, preValidation: checkUpgrade },
      withToken: { onRequest: httpLimit, preValidation: requireToken },
      ops: { onRequest: httpLimit, preValidation: requireOps },
      limited: { onRequest: httpLimit },
    };
    fastify.decorate('access', access);
  },
  { name: 'access', dependencies: ['errors', 'config', 'auth', 'hub', 'fleet-limits'] },
);
