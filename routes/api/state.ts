import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ACCESS_DOCS } from '../../plugins/access.ts';
import { errorResponses, HttpError } from '../../src/errors.ts';
import { buildFilter, TOPICS, TopicError, validateSubscription } from '../../src/topics.ts';

const Query = Type.Object({
  topics: Type.Optional(
    Type.String({ maxLength: 2048, description: 'comma-separated topics; every readable topic when absent' }),
  ),
});
const Snapshot = Type.Object(
  {
    sequence: Type.Integer({
      minimum: 0,
      description: 'of the last change applied (the socket updates carry it)',
    }),
    epoch: Type.String({
      description: 'changes when the hub restarts: sequences of two epochs do not compare',
    }),
    timestamp: Type.String({ format: 'date-time', description: 'when the snapshot was taken' }),
    data: Type.Object(
      {},
      {
        additionalProperties: true,
        description:
          'each topic asked for and its entities, as a state_update carries them (docs/protocol.md)',
      },
    ),
  },
  { description: 'the snapshot' },
);

/** GET /api/v1/state?topics=…: the current snapshot of topics the token's role may read, as JSON. */
const stateRoute: FastifyPluginAsync = async (fastify) => {
  fastify.withTypeProvider<TypeBoxTypeProvider>().get(
    '/api/v1/state',
    {
      ...fastify.access.withToken,
      schema: {
        summary: 'The current state',
        description:
          "A snapshot of the topics asked for (a topic, or a symbol-scoped `topic:SYMBOL`), each of which the token's role must read; every topic it reads when `topics` is absent. With a token, or none from an address of auth.anonymous.",
        tags: ['state'],
        security: ACCESS_DOCS.withToken.security,
        querystring: Query,
        response: {
          200: Snapshot,
          ...errorResponses({
            400: 'unknown_topic: a topic (or symbol) that does not exist; invalid_request: `topics` too long',
            403: "forbidden_topic: a topic the token's role may not read",
          }),
          ...ACCESS_DOCS.withToken.response,
        },
      },
    },
    async (request) => {
      const principal = request.principal!;
      const { auth, state } = fastify;
      const names = request.query.topics
        ? request.query.topics
            .split(',')
            .map((name) => name.trim())
            .filter(Boolean)
        : TOPICS.filter((topic) => auth.mayRead(principal, topic));
      let subscriptions: string[];
      try {
        subscriptions = names.map(validateSubscription);
      } catch (error) {
        if (!(error instanceof TopicError)) throw error;
        throw new HttpError(error.code, error.message);
      }
      const forbidden = subscriptions.filter((name) => !auth.mayRead(principal, name));
      if (forbidden.length > 0) {
        throw new HttpError('forbidden_topic', `role ${principal.role} may not read ${forbidden.join(', ')}`);
      }
      return {
        sequence: state.sequence,
        epoch: state.epoch,
        timestamp: new Date().toISOString(),
        data: state.snapshot(buildFilter(subscriptions)),
      };
    },
  );
};
export default stateRoute;
