import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../src/errors.ts';

const Health = Type.Object(
  { status: Type.Literal('ok'), service: Type.Literal('dashboard-server') },
  { description: 'the process is up' },
);
const Ready = Type.Object({ status: Type.Literal('ready') }, { description: 'ready for clients' });
/** The error shape (ErrorBody), and `status`/`reason` as probes have always read them. */
const NotReady = Type.Object(
  {
    error: Type.Literal('not_ready'),
    message: Type.String({ description: 'the reason, as `reason`' }),
    status: Type.Literal('not_ready'),
    reason: Type.String({
      description: 'e.g. `redis is down: …`, `redis is stalled: …`, `nats is connecting`, `shutting down`',
    }),
  },
  {
    description:
      'not_ready: Redis not subscribed and loaded, NATS not connected (when configured), or draining',
  },
);

/**
 * GET /health (the process is up) and GET /ready (Redis subscribed and the initial load done, NATS connected when
 * configured).
 */
const healthRoutes: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/health',
    {
      schema: {
        summary: 'Liveness',
        description: 'Answers while the process is up. Never rate limited.',
        tags: ['health'],
        response: { 200: Health },
      },
    },
    async () => ({
      status: 'ok' as const,
      service: 'dashboard-server' as const,
    }),
  );
  app.get(
    '/ready',
    {
      schema: {
        summary: 'Readiness',
        description:
          'Ready once Redis is connected, its channels subscribed and its snapshot keys loaded, and, when nats.url is set, NATS connected; not while draining. History (PostgreSQL) is no part of it. Never rate limited.',
        tags: ['health'],
        response: { 200: Ready, 503: NotReady },
      },
    },
    async (_request, reply) => {
      const reason = fastify.draining
        ? 'shutting down'
        : (fastify.redisIngest.notReadyReason() ?? fastify.natsIngest.notReadyReason());
      // The error shape (src/errors.ts), and `status`/`reason` as probes have always read them.
      if (reason)
        return reply.code(503).send({ ...errorBody('not_ready', reason), status: 'not_ready', reason });
      return { status: 'ready' as const };
    },
  );
};
export default healthRoutes;
