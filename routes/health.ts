import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { errorBody } from '../src/errors.ts';

const Health = Type.Object({ status: Type.Literal('ok'), service: Type.Literal('dashboard-server') });
const Ready = Type.Object({ status: Type.Literal('ready') });
const NotReady = Type.Object({
  error: Type.String(),
  message: Type.String(),
  status: Type.Literal('not_ready'),
  reason: Type.String(),
});

/**
 * GET /health (the process is up) and GET /ready (Redis subscribed and the initial load done, NATS connected when
 * configured).
 */
const healthRoutes: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get('/health', { schema: { response: { 200: Health } } }, async () => ({
    status: 'ok' as const,
    service: 'dashboard-server' as const,
  }));
  app.get('/ready', { schema: { response: { 200: Ready, 503: NotReady } } }, async (_request, reply) => {
    const reason = fastify.draining
      ? 'shutting down'
      : (fastify.redisIngest.notReadyReason() ?? fastify.natsIngest.notReadyReason());
    // The error shape (src/errors.ts), and `status`/`reason` as probes have always read them.
    if (reason)
      return reply.code(503).send({ ...errorBody('not_ready', reason), status: 'not_ready', reason });
    return { status: 'ready' as const };
  });
};
export default healthRoutes;
