import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { HttpError } from '../../src/errors.ts';
import { buildFilter, TOPICS, TopicError, validateSubscription } from '../../src/topics.ts';

const Query = Type.Object({
  topics: Type.Optional(
    Type.String({ maxLength: 2048, description: 'comma-separated topics; every readable topic when absent' }),
  ),
});

/** GET /api/v1/state?topics=…: the current snapshot of topics the token's role may read, as JSON. */
const stateRoute: FastifyPluginAsync = async (fastify) => {
  fastify
    .withTypeProvider<TypeBoxTypeProvider>()
    .get(
      '/api/v1/state',
      { ...fastify.access.withToken, schema: { querystring: Query } },
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
          throw new HttpError(
            'forbidden_topic',
            `role ${principal.role} may not read ${forbidden.join(', ')}`,
          );
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
