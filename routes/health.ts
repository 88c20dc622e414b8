import { Type, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';

const Health = Type.Object({ status: Type.Literal('ok'), service: Type.Literal('dashboard-server') });
const Ready = Type.Object({ status: Type.String(), reason: Type.Optional(Type.String()) });

/** GET /health (the process is up) and GET /ready (Redis subscribed and the initial load done). */
const healthRoutes: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  app.get('/health', { schema: { response: { 200: Health } } }, async () => ({
    status: 'ok' as const,
    service: 'dashboard-server' as const,
  }));
  app.get('/ready', { schema: { response: { 200: Ready, 503: Ready } } }, async (_request, reply) => {
    if (fastify.access.draining)
      return reply.code(503).send({ status: 'not_ready', reason: 'shutting down' });
    const reason = fastify.redisIngest.notReadyReason();
    if (reason) return reply.code(503).send({ status: 'not_ready', reason });
    return { status: 'ready' };
  });
};
export default healthRoutes;
