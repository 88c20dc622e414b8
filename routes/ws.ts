import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { CLIENT_TYPES } from '../src/broadcaster.ts';
import { FORMATS } from '../src/codec.ts';

export const WsQuerySchema = Type.Object({
  type: Type.Union(
    CLIENT_TYPES.map((t) => Type.Literal(t)),
    { default: 'web' },
  ),
  format: Type.Union(
    FORMATS.map((f) => Type.Literal(f)),
    { default: 'json' },
  ),
});

/** GET /ws: the upgrade; everything after it is the hub's (see docs/protocol.md). */
const wsRoute: FastifyPluginAsync = async (fastify) => {
  fastify
    .withTypeProvider<TypeBoxTypeProvider>()
    .get('/ws', { websocket: true, schema: { querystring: WsQuerySchema } }, (socket, request) => {
      fastify.hub.connect(socket, request.query.type, request.query.format);
    });
};
export default wsRoute;
