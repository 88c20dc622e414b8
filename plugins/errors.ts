import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { redactTokenInUrl } from '../src/access.ts';
import { bodyForStatus, ErrorBodySchema, errorBody, toErrorReply } from '../src/errors.ts';

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * One body for every HTTP 4xx/5xx, `{"error": code, "message": …}` (src/errors.ts): the error handler for
 * whatever a hook or route throws (HttpError, schema validation, @fastify/rate-limit, a bug), the 404 handler,
 * and a last check that fills in an error status sent with no body (e.g. @fastify/websocket's 404 for a GET /ws
 * without an upgrade). Registered first, so that every route and plugin inherits it.
 */
export default fp(
  async (fastify) => {
    // The error responses of every route's schema refer to it (`Type.Ref(ErrorBodySchema)`).
    fastify.addSchema(ErrorBodySchema);
    fastify.setErrorHandler((error, request, reply) => {
      const { statusCode, body, unexpected } = toErrorReply(error);
      if (unexpected) request.log.error({ err: error }, 'request failed');
      else request.log.info({ error: body.error, statusCode }, `request refused: ${body.message}`);
      return reply.code(statusCode).type(JSON_TYPE).send(body);
    });

    // Fastify's own 404 logs and echoes the raw URL, which may carry ?token=.
    fastify.setNotFoundHandler((request, reply) => {
      const url = redactTokenInUrl(request.url);
      request.log.info({ url }, 'route not found');
      return reply.code(404).send(errorBody('not_found', `no route ${request.method} ${url}`));
    });

    fastify.addHook('onSend', async (_request, reply, payload) => {
      if (reply.statusCode < 400 || (payload !== undefined && payload !== null && payload !== ''))
        return payload;
      reply.type(JSON_TYPE);
      return JSON.stringify(bodyForStatus(reply.statusCode));
    });
  },
  { name: 'errors' },
);

/**
 * Answers a request Node's HTTP parser refused before Fastify saw it (malformed, headers too large, too slow):
 * Fastify's `clientErrorHandler` option, with the same body as every other error.
 */
export function clientErrorHandler(
  this: FastifyInstance,
  error: Error & { code?: string },
  socket: Socket,
): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  this.log.debug({ err: error }, 'client error');
  if (socket.writable) {
    const body = JSON.stringify(bodyForStatus(status));
    socket.write(
      `HTTP/1.1 ${status} ${statusText(status)}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: ${JSON_TYPE}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

function statusText(status: number): string {
  return status === 408
    ? 'Request Timeout'
    : status === 431
      ? 'Request Header Fields Too Large'
      : 'Bad Request';
}
