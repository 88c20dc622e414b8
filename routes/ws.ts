import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ACCESS_DOCS } from '../plugins/access.ts';
import { FORMATS } from '../src/codec.ts';
import { errorResponses, HttpError } from '../src/errors.ts';
import { JSON_ONLY, PROTOCOL_NAMES, Protocols } from '../src/hub/protocols/index.ts';
import { CLIENT_TYPES } from '../src/hub/session.ts';

/** A string enum as plain JSON Schema `enum`, so a bad value gets one readable validation message. */
const StringEnum = <T extends string>(
  values: readonly T[],
  options: { default?: NoInfer<T>; description?: string } = {},
) => Type.Unsafe<T>({ type: 'string', enum: [...values], ...options });

export const WsQuerySchema = Type.Object({
  // No default: whether the upgrade said `type` decides which b25 protocol a `{"type":…}` first message selects.
  type: Type.Optional(
    StringEnum(CLIENT_TYPES, {
      description:
        'the cadence of updates: tui every broadcast.tui_interval, web (when absent) every web_interval',
    }),
  ),
  // Optional with a default: the validator fills it in, and the document shows it is not required.
  format: Type.Optional(
    StringEnum(FORMATS, {
      default: 'json',
      description: 'json: JSON text frames; msgpack: standard MessagePack binary frames',
    }),
  ),
  protocol: Type.Optional(
    StringEnum(PROTOCOL_NAMES, {
      description:
        "the wire protocol (hub, or a b25 client's, JSON only); when absent, the hub's, unless the first message chooses",
    }),
  ),
});

/** The upgrade as the OpenAPI document shows it: its parameters, the 101, and every refusal before it. */
const WsSchema = {
  summary: 'Open a WebSocket',
  description:
    "The WebSocket upgrade (`Connection: Upgrade`, `Upgrade: websocket`). The token goes in `Authorization: Bearer`, in `?token=`, or as the subprotocols `bearer, <token>` (`new WebSocket(url, ['bearer', token])`); none from an address of auth.anonymous. Everything after the 101 is docs/protocol.md. Counts against websocket.connect_rate_limit, not http.rate_limit.",
  tags: ['websocket'],
  security: ACCESS_DOCS.upgrade.security,
  querystring: WsQuerySchema,
  response: {
    101: Type.Null({ description: 'Switching Protocols: the socket is open (docs/protocol.md)' }),
    ...errorResponses({
      400: 'invalid_request: a bad type, format or protocol, or a b25 protocol with format=msgpack',
      404: 'not_found: a GET /ws that is not a WebSocket upgrade',
    }),
    ...ACCESS_DOCS.upgrade.response,
  },
};

/** GET /ws: the upgrade; everything after it is the hub's (see docs/protocol.md). */
const wsRoute: FastifyPluginAsync = async (fastify) => {
  fastify.withTypeProvider<TypeBoxTypeProvider>().get(
    '/ws',
    {
      ...fastify.access.upgrade,
      websocket: true,
      // A copy: @fastify/websocket marks the route's schema `hide: true`, which keeps /ws out of the OpenAPI
      // document; this route is documented all the same (the upgrade's parameters and refusals are REST-like).
      schema: { ...WsSchema },
      config: { swaggerTransform: ({ schema, url }) => ({ schema: { ...schema, hide: false }, url }) },
      // Before the upgrade: the b25 clients' protocols are JSON text only.
      preHandler: async (request) => {
        const { protocol, format = 'json' } = request.query;
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
      const { type, format = 'json', protocol } = request.query;
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
