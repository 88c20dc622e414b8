import { Type } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ACCESS_DOCS } from '../plugins/access.ts';

const Count = Type.Integer({ minimum: 0 });
const Counts = (description: string) => Type.Record(Type.String(), Count, { description });
const Group = (description: string) => Type.Object({}, { additionalProperties: true, description });

/**
 * What /debug answers: its top-level fields (docs/operations.md "Endpoints for operators" says what each holds);
 * the nested groups are free-form (additionalProperties), so a counter added to them needs no change here.
 */
const Debug = Type.Object(
  {
    clients: Count,
    clients_by_type: Counts('open sockets by client type (cadence)'),
    clients_by_protocol: Type.Record(Type.String(), Type.Record(Type.String(), Count), {
      description: 'open sockets by client type, then wire protocol',
    }),
    clients_by_format: Type.Record(Type.String(), Type.Record(Type.String(), Count), {
      description: 'open sockets by client type, then format (json, msgpack)',
    }),
    users: Type.Integer({ minimum: 0, description: 'distinct users with a socket open' }),
    groups: Count,
    groups_spread: Type.Integer({ minimum: 0, description: 'groups sent in slices over the interval' }),
    state_size: Counts('entities per topic'),
    state_bytes: Type.Number({ description: 'estimated JSON size of the state' }),
    state_budget: Type.Number({ description: 'ingest.max_state_size' }),
    journal_bytes: Type.Number(),
    uptime: Type.Integer({ description: 'seconds since the start' }),
    last_update: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    sequence: Count,
    epoch: Type.String(),
    journal_length: Count,
    redis: Group(
      'the Redis subscriber: status, since, subscribed, loaded, reconnects, lastError, snapshotSkipped',
    ),
    nats: Group('NATS: enabled, status, since, server, reconnects, lastError, subjects'),
    history: Group(
      'the history writer: enabled, status, since, written, dropped, queued, errors, breaker, …',
    ),
    ingest: Group(
      'ingest counters: messages, invalid, stale (by source, then topic), refused, symbolsEvicted',
    ),
    fleet_limits: Group(
      'websocket.global_limits: enabled, replica, ttlMs, redis, held, admitted, refused, failOpen, released, …',
    ),
    ingest_pending: Group('order books waiting to be ingested'),
    broadcast: Group('fan-out counters: broadcasts, sentBytes, sentMessages, disconnects, errors, …'),
    pid: Type.Integer({ description: 'the process that answered (one of server.workers)' }),
    leader: Group(
      'the lease: self (this replica), holder, is_leader, lease_age (ms), takeovers, isolated, term, relay counters',
    ),
    sources: Type.Record(Type.String(), Type.Object({}, { additionalProperties: true }), {
      description: 'each polled backend: status, breaker, last success and error, polls, breaker_stats',
    }),
  },
  { additionalProperties: true, description: 'counters; never the state itself' },
);

/** GET /debug: counters an operator reads with curl; never the state itself. */
const debugRoute: FastifyPluginAsync = async (fastify) => {
  const schema = {
    summary: 'Counters for operators',
    description:
      'Clients, groups, state size, sequence and epoch, Redis, NATS, history, ingest, fan-out and backend counters. For loopback, ops.allowed_cidrs or an admin token; rate limited.',
    tags: ['operations'],
    security: ACCESS_DOCS.ops.security,
    response: { 200: Debug, ...ACCESS_DOCS.ops.response },
  };
  fastify.get('/debug', { ...fastify.access.ops, schema }, async () => {
    const { hub, state, ingest, redisIngest } = fastify;
    const lastUpdate = state.lastUpdate;
    return {
      clients: hub.clients.size,
      clients_by_type: hub.clientsByType(),
      clients_by_protocol: hub.clientsByProtocol(),
      clients_by_format: hub.clientsByFormat(),
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
      fleet_limits: fastify.fleetLimits.info(),
      ingest_pending: redisIngest.deferred(),
      broadcast: hub.stats,
      pid: process.pid,
      leader: fastify.leader.debug(),
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
