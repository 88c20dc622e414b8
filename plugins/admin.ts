import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ACCESS_DOCS } from './access.ts';

/** A file of the page, read once at start: the page is a few kilobytes and changes only with a release. */
interface Asset {
  readonly body: Buffer;
  readonly type: string;
  readonly etag: string;
}

/** The page's files: plain HTML, CSS and browser JavaScript, no build step (src/ ships in every release). */
const ASSET_DIR = new URL('../src/admin/', import.meta.url);

function readAsset(name: string, type: string): Asset {
  const body = readFileSync(new URL(name, ASSET_DIR));
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, type, etag };
}

/** A Host header fit to repeat in the policy: a name or address and a port, nothing a header could break on. */
const PLAIN_HOST = /^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * The page's Content-Security-Policy: its script, style and data come from the hub only (no inline code, no CDN).
 * CSP Level 3 lets `'self'` match ws:/wss: on the page's own host (Chromium, Firefox), but older engines (Safari
 * before 15.4) do not: the socket of the "try it" area is also named by the host the browser asked for.
 */
export function adminCsp(host: string | undefined): string {
  const sockets = host !== undefined && PLAIN_HOST.test(host) ? ` ws://${host} wss://${host}` : '';
  return [
    "default-src 'self'",
    `connect-src 'self'${sockets}`,
    "img-src 'self' data:",
    "script-src 'self'",
    "style-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

const HTML = { description: 'the page', content: { 'text/html': { schema: { type: 'string' } } } };

/**
 * The admin page at GET /admin (GET / redirects to it): one static page that polls /debug and /metrics and draws
 * them (src/admin/). Every route of it takes the /debug access rule (loopback, ops.allowed_cidrs or an admin token)
 * and counts against http.rate_limit like /debug does.
 */
export default fp(
  async (fastify) => {
    const page = readAsset('index.html', 'text/html; charset=utf-8');
    const script = readAsset('admin.js', 'text/javascript; charset=utf-8');
    const style = readAsset('admin.css', 'text/css; charset=utf-8');

    function send(request: FastifyRequest, reply: FastifyReply, asset: Asset) {
      // `no-cache`: kept, but checked again at each load, so a new release's page is seen at once.
      reply
        .header('cache-control', 'no-cache')
        .header('etag', asset.etag)
        .header('x-content-type-options', 'nosniff')
        .type(asset.type);
      if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
      return reply.send(asset.body);
    }

    const schema = (summary: string, description: string, ok: object) => ({
      summary,
      description,
      tags: ['operations'],
      security: ACCESS_DOCS.ops.security,
      response: { ...ok, ...ACCESS_DOCS.ops.response },
    });

    fastify.get(
      '/',
      {
        ...fastify.access.ops,
        schema: schema('Redirects to the admin page', 'A 302 to /admin.', {
          302: { description: 'to /admin', type: 'null' },
        }),
      },
      async (_request, reply) => reply.redirect('/admin', 302),
    );
    fastify.get(
      '/admin',
      {
        ...fastify.access.ops,
        schema: schema(
          'The admin page',
          'A live page for operators: clients, rates, broadcast, Redis, NATS, history, backends, ingest, a chart, and a "try it" area. It polls /debug and /metrics every 2 s (docs/operations.md).',
          { 200: HTML },
        ),
      },
      async (request, reply) => {
        reply
          .header('content-security-policy', adminCsp(request.host))
          .header('referrer-policy', 'no-referrer');
        return send(request, reply, page);
      },
    );
    fastify.get(
      '/admin/admin.js',
      {
        ...fastify.access.ops,
        schema: schema('The admin page script', 'Plain browser JavaScript, served by the hub.', {
          200: { description: 'the script', content: { 'text/javascript': { schema: { type: 'string' } } } },
        }),
      },
      async (request, reply) => send(request, reply, script),
    );
    fastify.get(
      '/admin/admin.css',
      {
        ...fastify.access.ops,
        schema: schema('The admin page style sheet', 'Served by the hub.', {
          200: { description: 'the style sheet', content: { 'text/css': { schema: { type: 'string' } } } },
        }),
      },
      async (request, reply) => send(request, reply, style),
    );
  },
  { name: 'admin', dependencies: ['access'] },
);
