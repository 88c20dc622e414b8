import type { FastifyPluginAsync } from 'fastify';

/** GET /debug: counters an operator reads with curl; never the state itself. */
const debugRoute: FastifyPluginAsync = async (fastify) => {
  fastify.get('/debug', fastify.access.ops, async () => {
    const { hub, state, ingest, redisIngest } = fastify;
    const lastUpdate = state.lastUpdate;
    return {
      clients: hub.clients.size,
      clients_by_type: hub.clientsByType(),
      clients_by_protocol: hub.clientsByProtocol(),
      users: hub.users,
      groups: hub.groupCount,
      groups_spread: hub.spreadGroupCount,
      state_size: state.size(),
      state_bytes: state.bytes,
      state_budget: fastify.config.ingest.max_state_size,
      journal_bytes: state.journalBytes,
      uptime: Math.round((Date.now() - state.startedAt) / 1000),
      last_update: lastUpdate === undefined ? null : new Date(lastUpdate).toISOString(),
      sequence: state.sequence,
      epoch: state.epoch,
      journal_length: state.journalLength,
      redis: redisIngest.info,
      nats: fastify.natsIngest.info,
      history: { ...fastify.history.info, queued: fastify.history.queued() },
      ingest: ingest.counters,
      ingest_pending: redisIngest.deferred(),
      broadcast: hub.stats,
      sources: Object.fromEntries(
        [...fastify.poller.sources].map(([name, source]) => [
          name,
          { ...source.status, polls: source.counts, breaker_stats: source.breaker.stats },
        ]),
      ),
    };
  });
};
export default debugRoute;
