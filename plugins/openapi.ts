import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Type } from '@fastify/type-provider-typebox';
import fp from 'fastify-plugin';
import { ACCESS_DOCS } from './access.ts';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  name: string;
  version: string;
  description: string;
};

/**
 * The reference page's Content-Security-Policy: its page, scripts, styles and the document all come from the hub
 * (@fastify/swagger-ui's own files; no CDN, works offline). Swagger UI sets inline styles; its logo is a data: URL.
 */
const CSP = [
  "default-src 'self'",
  "base-uri 'self'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'self'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
].join('; ');

/**
 * The REST routes' OpenAPI 3.1 document at GET /openapi.json, built by @fastify/swagger from every route's
 * schema, and a reference page at GET /docs (@fastify/swagger-ui, served from its own files). Registered before
 * the routes: @fastify/swagger collects them as they are added (onRoute). Both are public (they describe the
 * routes, and hold no data), and count against http.rate_limit like every REST route but /health and /ready.
 */
export default fp(
  async (fastify) => {
    await fastify.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: pkg.name,
          version: pkg.version,
          description: `${pkg.description}. The REST routes and the /ws upgrade; what is spoken on the socket after it is in docs/protocol.md. Every 4xx/5xx answer, a 500 included, has the ErrorBody shape.`,
        },
        // No `servers`: the document describes the hub that serves it, at whatever address it was reached.
        tags: [
          { name: 'health', description: 'Probes: never rate limited, no token' },
          { name: 'state', description: 'The current state, with a token' },
          { name: 'history', description: 'What history recorded (with history.database_url), with a token' },
          { name: 'websocket', description: 'The /ws upgrade (docs/protocol.md)' },
          { name: 'operations', description: 'For loopback, ops.allowed_cidrs or an admin token' },
          { name: 'reference', description: 'This document' },
        ],
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              bearerFormat: 'JWT',
              description:
                'A JWT of the login service or the API gateway (auth.jwt), as `Authorization: Bearer <token>`. Its role decides the topics it reads (auth.topic_roles).',
            },
            tokenQuery: {
              type: 'apiKey',
              in: 'query',
              name: 'token',
              description:
                'The same JWT as `?token=`, for browsers (masked in every log line). A WebSocket client may also offer it as the subprotocols `bearer, <token>`.',
            },
          },
        },
      },
      // A shared schema keeps its $id as its name: `#/components/schemas/ErrorBody`.
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) =>
          typeof json.$id === 'string' ? json.$id : `def-${i}`,
      },
    });

    // A scope of their own: the REST rate limit covers the page, its assets and the document, and nothing else.
    await fastify.register(async (reference) => {
      reference.addHook('onRequest', fastify.access.limited.onRequest);
      await reference.register(swaggerUi, {
        routePrefix: '/docs',
        staticCSP: CSP,
        theme: { title: `${pkg.name} API` },
        uiConfig: { deepLinking: true, docExpansion: 'list' },
      });
      reference.get(
        '/openapi.json',
        {
          schema: {
            summary: 'This OpenAPI document',
            description:
              'Every REST route with its parameters, responses and errors (the page at /docs shows it).',
            tags: ['reference'],
            response: {
              200: Type.Object({}, { additionalProperties: true, description: 'an OpenAPI 3.1 document' }),
              ...ACCESS_DOCS.limited.response,
            },
          },
        },
        async () => fastify.swagger(),
      );
    });
  },
  { name: 'openapi', dependencies: ['errors', 'access'] },
);
