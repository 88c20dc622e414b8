import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { FORMATS } from '../src/codec.ts';
import { HttpError } from '../src/errors.ts';
import { JSON_ONLY, PROTOCOL_NAMES, Protocols } from '../src/hub/protocols/index.ts';
import { CLIENT_TYPES } from '../src/hub/session.ts';

/** A string enum as plain JSON Schema `enum`, so a bad value gets one readable validation message. */
const StringEnum = <T extends string>(values: readonly T[], defaultValue?: T) =>
  Type.Unsafe<T>({
    type: 'string',
    enum: [...values],
    ...(defaultValue === undefined ? {} : { default: defaultValue }),
  });

export const WsQuerySchema = Type.Object({
  // No default: whether the upgrade said `type` decides which b25 protocol a `{"type":…}` first message selects.
  type: Type.Optional(StringEnum(CLIENT_TYPES)),
  format: StringEnum(FORMATS, 'json'),
  protocol: Type.Optional(StringEnum(PROTOCOL_NAMES)),
});

/** GET /ws: the upgrade; everything after it is the hub's (see docs/protocol.md). */
const wsRoute: FastifyPluginAsync = async (fastify) => {
  fastify.withTypeProvider<TypeBoxTypeProvider>().get(
    '/ws',
    {
      ...fastify.access.upgrade,
      websocket: true,
      schema: { querystring: WsQuerySchema },
      // Before the upgrade: the b25 clients' protocols are JSON text only.
      preHandler: async (request) => {
        const { protocol, format } = request.query;
        if (protocol !== undefined && JSON_ONLY.has(protocol) && format !== 'json') {
          throw new HttpError('invalid_request', `protocol ${protocol} is JSON only (format=json)`);
        }
      },
    },
    (socket, request) => {
      // @fastify/websocket's error listener holds the upgrade's request and reply, and the raw socket holds the
      // upgrade's ServerResponse, for the life of the connection: ~3 KB per client. The hub handles errors itself.
      socket.removeAllListeners('error');
      const raw = request.raw.socket as Socket & { _httpMessage?: ServerResponse | null };
      raw._httpMessage?.detachSocket(raw);
      const { type, format, protocol } = request.query;
      const { hub } = fastify;
      if (protocol === undefined) {
        hub.connect(socket, type ?? 'web', format, request.principal, undefined, {
          typeGiven: type !== undefined,
        });
      } else {
        const cadence = Protocols.cadenceOf(protocol, type);
        hub.connect(socket, cadence, format, request.principal, hub.protocols.named(protocol, format));
      }
    },
  );
};
export default wsRoute;
