import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { buildFilter, TOPICS, TopicError, validateSubscription } from '../../src/topics.ts';

const Query = Type.Object({
  topics: Type.Optional(
    Type.String({ maxLength: 2048, description: 'comma-separated topics; all when absent' }),
  ),
});

/** GET /api/v1/state?topics=…: the current snapshot of some or all topics, as JSON. */
const stateRoute: FastifyPluginAsync = async (fastify) => {
  fastify
    .withTypeProvider<TypeBoxTypeProvider>()
    .get('/api/v1/state', { schema: { querystring: Query } }, async (request, reply) => {
      const names = request.query.topics
        ? request.query.topics
            .split(',')
            .map((name) => name.trim())
            .filter(Boolean)
        : [...TOPICS];
      let subscriptions: string[];
      try {
        subscriptions = names.map(validateSubscription);
      } catch (error) {
        if (!(error instanceof TopicError)) throw error;
        return reply.code(400).send({ error: error.code, message: error.message });
      }
      const { state } = fastify;
      return {
        sequence: state.sequence,
        epoch: state.epoch,
        timestamp: new Date().toISOString(),
        data: state.snapshot(buildFilter(subscriptions)),
      };
    });
};
export default stateRoute;
