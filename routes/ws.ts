import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { FORMATS } from '../src/codec.ts';
import { CLIENT_TYPES } from '../src/hub/session.ts';

/** A string enum as plain JSON Schema `enum`, so a bad value gets one readable validation message. */
const StringEnum = <T extends string>(values: readonly T[], defaultValue: T) =>
  Type.Unsafe<T>({ type: 'string', enum: [...values], default: defaultValue });

export const WsQuerySchema = Type.Object({
  type: StringEnum(CLIENT_TYPES, 'web'),
  format: StringEnum(FORMATS, 'json'),
});

/** GET /ws: the upgrade; everything after it is the hub's (see docs/protocol.md). */
const wsRoute: FastifyPluginAsync = async (fastify) => {
  fastify
    .withTypeProvider<TypeBoxTypeProvider>()
    .get(
      '/ws',
      { ...fastify.access.upgrade, websocket: true, schema: { querystring: WsQuerySchema } },
      (socket, request) => {
        // @fastify/websocket's error listener holds the upgrade's request and reply, and the raw socket holds the
        // upgrade's ServerResponse, for the life of the connection: ~3 KB per client. The hub handles errors itself.
        socket.removeAllListeners('error');
        const raw = request.raw.socket as Socket & { _httpMessage?: ServerResponse | null };
        raw._httpMessage?.detachSocket(raw);
        fastify.hub.connect(socket, request.query.type, request.query.format, request.principal);
      },
    );
};
export default wsRoute;
