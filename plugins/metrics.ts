import type { FastifySchema, RouteOptions } from 'fastify';
import metricsPlugin from 'fastify-metrics';
import fp from 'fastify-plugin';
import { SOURCE_NAMES } from '../src/backends.ts';
import { CloseCode } from '../src/hub/close-codes.ts';
import { CLIENT_TYPES } from '../src/hub/session.ts';
import { countsBySource } from '../src/ingest/counters.ts';
import { POLL_OUTCOMES } from '../src/poller.ts';
import { ACCESS_DOCS } from './access.ts';

/** /metrics in the OpenAPI document (plugins/openapi.ts): Prometheus text, not JSON, so nothing is serialized. */
const METRICS_SCHEMA: FastifySchema = {
  summary: 'Prometheus metrics',
  description:
    'Process, route and hub metrics in the Prometheus text format (docs/metrics.md). For loopback, ops.allowed_cidrs or an admin token; rate limited.',
  tags: ['operations'],
  security: ACCESS_DOCS.ops.security,
  response: {
    200: {
      description: 'the Prometheus text exposition format, version 0.0.4',
      content: { 'text/plain': { schema: { type: 'string' } } },
    },
    ...ACCESS_DOCS.ops.response,
  },
};

/** Prometheus metrics at /metrics: process and route metrics from fastify-metrics, and the hub's own. */
export default fp(
  async (fastify) => {
    await fastify.register(metricsPlugin.default, {
      // fastify-metrics supplies the handler; the route options add the operations access check.
      endpoint: {
        url: '/metrics',
        method: 'GET',
        logLevel: 'warn',
        ...fastify.access.ops,
        schema: METRICS_SCHEMA,
      } as RouteOptions,
      // Each app registers its metrics anew (several apps are built in one test process).
      clearRegisterOnInit: true,
      routeMetrics: { enabled: { histogram: true, summary: false } },
    });
    const { client } = fastify.metrics;
    const { hub, ingest, redisIngest, state } = fastify;

    /** A counter whose value lives in the hub or ingest: read at scrape time, never double-counted. */
    function mirroredCounter(
      name: string,
      help: string,
      labelNames: string[],
      read: () => [object, number][],
    ) {
      return new client.Counter({
        name,
        help,
        labelNames,
        collect() {
          this.reset();
          for (const [labels, value] of read()) this.inc(labels as Record<string, string>, value);
        },
      });
    }

    new client.Gauge({
      name: 'dashboard_websocket_clients_total',
      help: 'Connected WebSocket clients by client type and wire protocol',
      labelNames: ['client_type', 'protocol'],
      collect() {
        this.reset();
        for (const type of CLIENT_TYPES) this.set({ client_type: type, protocol: 'hub' }, 0);
        for (const [type, byProtocol] of Object.entries(hub.clientsByProtocol()))
          for (const [protocol, count] of Object.entries(byProtocol))
            this.set({ client_type: type, protocol }, count);
      },
    });
    mirroredCounter(
      'dashboard_broadcasts_total',
      'Updates encoded and sent to a group of clients',
      ['client_type'],
      () => CLIENT_TYPES.map((type) => [{ client_type: type }, hub.stats.broadcasts[type]]),
    );
    mirroredCounter(
      'dashboard_sent_bytes_total',
      'Bytes handed to client sockets',
      ['client_type', 'format'],
      () =>
        Object.entries(hub.stats.sentBytes).flatMap(([type, byFormat]) =>
          Object.entries(byFormat).map(([format, bytes]): [object, number] => [
            { client_type: type, format },
            bytes ?? 0,
          ]),
        ),
    );
    mirroredCounter('dashboard_sent_messages_total', 'Frames handed to client sockets', ['client_type'], () =>
      CLIENT_TYPES.map((type) => [{ client_type: type }, hub.stats.sentMessages[type]]),
    );
    const byProtocol = (field: 'bytes' | 'messages') => () =>
      Object.entries(hub.stats.sentByProtocol).flatMap(([type, protocols]) =>
        Object.entries(protocols).map(([protocol, sent]): [object, number] => [
          { client_type: type, protocol },
          sent[field],
        ]),
      );
    mirroredCounter(
      'dashboard_sent_protocol_bytes_total',
      'Bytes handed to client sockets, by wire protocol',
      ['client_type', 'protocol'],
      byProtocol('bytes'),
    );
    mirroredCounter(
      'dashboard_sent_protocol_messages_total',
      'Frames handed to client sockets, by wire protocol',
      ['client_type', 'protocol'],
      byProtocol('messages'),
    );
    mirroredCounter(
      'dashboard_ingest_messages_total',
      'Backend payloads accepted by ingest, by source (redis, nats: a message; poll: one record of a polled section)',
      ['source', 'topic'],
      () => countsBySource(ingest.counters.messages),
    );
    mirroredCounter(
      'dashboard_ingest_invalid_total',
      'Backend payloads rejected as invalid, by source (a refused poll counts once)',
      ['source', 'topic'],
      () => countsBySource(ingest.counters.invalid),
    );
    mirroredCounter(
      'dashboard_ingest_stale_total',
      'Valid backend payloads not written because the state holds a later version (an older order, position, strategy, account or risk; an alert held already or older than every kept one), by source',
      ['source', 'topic'],
      () => countsBySource(ingest.counters.stale),
    );
    mirroredCounter(
      'dashboard_ingest_refused_total',
      'Valid backend payloads refused by a limit (ingest.max_record_size, max_entries, max_symbols, max_state_size)',
      ['limit', 'topic'],
      () =>
        Object.entries(ingest.counters.refused).flatMap(([limit, byTopic]) =>
          Object.entries(byTopic).map(([topic, count]): [object, number] => [{ limit, topic }, count]),
        ),
    );
    mirroredCounter(
      'dashboard_symbols_evicted_total',
      'Symbols forgotten after ingest.symbol_idle_ttl without an update',
      [],
      () => [[{}, ingest.counters.symbolsEvicted]],
    );
    new client.Gauge({
      name: 'dashboard_state_bytes',
      help: 'Estimated JSON size of the aggregated state, in bytes (what ingest.max_state_size bounds)',
      collect() {
        this.set(state.bytes);
      },
    });
    new client.Gauge({
      name: 'dashboard_state_budget_used_ratio',
      help: 'How full the state budget (ingest.max_state_size) is, from 0 to 1',
      collect() {
        this.set(ingest.budgetUsed);
      },
    });
    new client.Gauge({
      name: 'dashboard_state_journal_bytes',
      help: 'Estimated size of the replaced values the journal keeps for clients that are behind, in bytes',
      collect() {
        this.set(state.journalBytes);
      },
    });
    mirroredCounter(
      'dashboard_ingest_conflated_total',
      'Backend messages (order books) replaced by a newer one of their channel before they were ingested',
      ['topic'],
      () =>
        Object.entries(redisIngest.deferred().conflatedByTopic).map(([topic, count]) => [{ topic }, count]),
    );
    mirroredCounter(
      'dashboard_ingest_pending_dropped_total',
      'Pending order books dropped, oldest first, to stay within ingest.orderbook_pending_max_size',
      ['topic'],
      () => Object.entries(redisIngest.deferred().droppedByTopic).map(([topic, count]) => [{ topic }, count]),
    );
    new client.Gauge({
      name: 'dashboard_ingest_pending_bytes',
      help: 'Bytes of order books waiting to be ingested (bounded by ingest.orderbook_pending_max_size)',
      collect() {
        this.set(redisIngest.deferred().pendingBytes);
      },
    });
    mirroredCounter('dashboard_client_messages_rejected_total', 'Client messages rejected', ['code'], () =>
      Object.entries(hub.stats.rejectedMessages).map(([code, count]) => [{ code }, count]),
    );
    mirroredCounter(
      'dashboard_ws_unanswered_rejections_total',
      'Client messages refused without an answer: the client protocol has no message for a refusal',
      [],
      () => [[{}, hub.stats.unansweredRejections]],
    );
    // The slow-consumer series is there from the start, at 0: an alert on its increase sees the first one.
    mirroredCounter('dashboard_disconnects_total', 'Client sockets closed by the hub', ['code'], () =>
      Object.entries({ [CloseCode.SLOW_CONSUMER]: 0, ...hub.stats.disconnects }).map(([code, count]) => [
        { code },
        count,
      ]),
    );
    mirroredCounter(
      'dashboard_slow_consumer_skips_total',
      'Ticks a client was skipped because its socket buffer was over websocket.max_buffered',
      [],
      () => [[{}, hub.stats.slowConsumerSkips]],
    );
    mirroredCounter(
      'dashboard_websocket_errors_total',
      'Connections ended by a frame the server refused (too large, bad opcode or UTF-8) or a socket error',
      ['code'],
      () => Object.entries(hub.stats.socketErrors).map(([code, count]) => [{ code }, count]),
    );
    mirroredCounter(
      'dashboard_hub_errors_total',
      'Unexpected errors caught in the hub by stage (broadcast, snapshot, send, message, heartbeat, tick); each cost one group or client',
      ['stage'],
      () => Object.entries(hub.stats.errors).map(([stage, count]) => [{ stage }, count]),
    );
    mirroredCounter(
      'dashboard_deferred_snapshots_total',
      'Snapshots (subscribe, resync) held back until a socket buffer over websocket.max_buffered drained',
      [],
      () => [[{}, hub.stats.deferredSnapshots]],
    );
    new client.Gauge({
      name: 'dashboard_websocket_max_buffered_bytes',
      help: 'The largest socket buffer of any client, in bytes',
      collect() {
        this.set(hub.maxBufferedAmount());
      },
    });
    new client.Gauge({
      name: 'dashboard_redis_connected',
      help: '1 while the Redis subscriber connection is up and Redis answers PING (0 when down or stalled)',
      collect() {
        this.set(redisIngest.info.status === 'up' ? 1 : 0);
      },
    });
    // NATS and history are exported whether they are on or not (at 0 when off): a dashboard or an alert rule
    // naming them works against every hub, and `dashboard_*_enabled` says which series mean something.
    const { natsIngest } = fastify;
    new client.Gauge({
      name: 'dashboard_nats_enabled',
      help: '1 when nats.url is set (the NATS ingest is configured), 0 otherwise',
      collect() {
        this.set(natsIngest.info.enabled ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'dashboard_nats_connected',
      help: '1 while the NATS connection is up (0 while connecting or down, and when nats.url is not set)',
      collect() {
        this.set(natsIngest.info.status === 'up' ? 1 : 0);
      },
    });
    mirroredCounter(
      'dashboard_nats_reconnects_total',
      'Times the NATS connection came back after a loss (each is followed by a refresh of orders and risk)',
      [],
      () => [[{}, natsIngest.info.reconnects]],
    );
    const { leader } = fastify;
    new client.Gauge({
      name: 'dashboard_leader',
      help: '1 while this replica holds the lease (polls the backends, writes history, relays the polls), 0 otherwise',
      collect() {
        this.set(leader.isLeader ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'dashboard_leader_isolated',
      help: '1 while Redis has not answered the lease for a whole lease: this replica polls for its own clients',
      collect() {
        this.set(leader.isolated ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'dashboard_leader_takeovers',
      help: 'Times a replica of the fleet took the lease (Redis <leader.key>:takeovers, as last read)',
      collect() {
        this.set(leader.info().takeovers);
      },
    });
    mirroredCounter(
      'dashboard_leader_relay_published_total',
      'Polls and statuses this replica relayed while leading, by result (ok, error)',
      ['result'],
      () => {
        const { relay } = leader.debug();
        return [
          [{ result: 'ok' }, relay.published],
          [{ result: 'error' }, relay.publish_errors],
        ];
      },
    );
    mirroredCounter(
      'dashboard_leader_relay_received_total',
      'Relayed polls and statuses received from the leader, by outcome: applied, stale (older than one applied, arrived while leading, or for a backend not configured here), invalid (dropped), resync (reads of the kept copies after a gap)',
      ['outcome'],
      () => Object.entries(leader.debug().relay.received).map(([outcome, n]) => [{ outcome }, n]),
    );
    // websocket.global_limits: exported whether on or not, at 0 when off (as NATS and history).
    const { fleetLimits } = fastify;
    new client.Gauge({
      name: 'dashboard_fleet_limits_enabled',
      help: '1 when websocket.global_limits is on (max_clients_per_user counted across the replicas in Redis), 0 otherwise',
      collect() {
        this.set(fleetLimits.enabled ? 1 : 0);
      },
    });
    mirroredCounter(
      'dashboard_fleet_user_limit_total',
      "Upgrades checked against websocket.max_clients_per_user across the replicas: admitted, refused (the user is at the limit on the replicas together), fail_open (Redis did not answer: admitted on this replica's count)",
      ['outcome'],
      () => {
        const info = fleetLimits.info();
        return [
          [{ outcome: 'admitted' }, info.admitted],
          [{ outcome: 'refused' }, info.refused],
          [{ outcome: 'fail_open' }, info.failOpen],
        ];
      },
    );
    mirroredCounter(
      'dashboard_fleet_user_slot_errors_total',
      "Writes of this replica's connection slots Redis did not take: release (the slot ages out instead), refresh (a round; the slots age out if it goes on)",
      ['operation'],
      () => {
        const info = fleetLimits.info();
        return [
          [{ operation: 'release' }, info.releaseFailed],
          [{ operation: 'refresh' }, info.refreshFailed],
        ];
      },
    );
    new client.Gauge({
      name: 'dashboard_fleet_user_slots',
      help: 'Connection slots this replica holds in Redis for its open sockets (websocket.global_limits)',
      collect() {
        this.set(fleetLimits.info().held);
      },
    });
    const { history } = fastify;
    const byKind = (counts: Record<string, number>) =>
      Object.entries(counts).map(([kind, count]): [object, number] => [{ kind }, count]);
    new client.Gauge({
      name: 'dashboard_history_enabled',
      help: '1 when history.database_url is set (the history writer is configured), 0 otherwise',
      collect() {
        this.set(history.info.enabled ? 1 : 0);
      },
    });
    mirroredCounter(
      'dashboard_history_rows_written_total',
      'Rows written to PostgreSQL by the history writer, by kind',
      ['kind'],
      () => byKind(history.info.written),
    );
    mirroredCounter(
      'dashboard_history_dropped_total',
      'History rows dropped, by kind: the queue was full (history.queue_max_rows), or the row was older than history.retention or more than a day ahead',
      ['kind'],
      () => byKind(history.info.dropped),
    );
    mirroredCounter(
      'dashboard_history_errors_total',
      'History writes that failed (the rows stay queued)',
      [],
      () => [[{}, history.info.errors]],
    );
    new client.Gauge({
      name: 'dashboard_history_queue_rows',
      help: 'History rows waiting to be written, by kind',
      labelNames: ['kind'],
      collect() {
        for (const [kind, rows] of Object.entries(history.queued())) this.set({ kind }, rows);
      },
    });
    new client.Gauge({
      name: 'dashboard_history_up',
      help: '1 while the history writer writes to PostgreSQL (0 while it is down or connecting, and when history.database_url is not set)',
      collect() {
        this.set(history.info.status === 'up' ? 1 : 0);
      },
    });
    const flushDuration = new client.Histogram({
      name: 'dashboard_history_flush_duration_seconds',
      help: 'Time one history write takes (every queued row, one multi-row insert per table)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    });
    history.observe((seconds) => flushDuration.observe(seconds));
    mirroredCounter(
      'dashboard_redis_snapshot_skipped_total',
      'Snapshot keys (market_data:*) skipped at a load: invalid (refused by ingest), unreadable (not a string or hash), failed (any other error)',
      ['reason'],
      () => Object.entries(redisIngest.info.snapshotSkipped).map(([reason, count]) => [{ reason }, count]),
    );
    new client.Gauge({
      name: 'dashboard_state_sequence',
      help: 'Sequence of the last change applied to the state',
      collect() {
        this.set(state.sequence);
      },
    });
    const duration = new client.Histogram({
      name: 'dashboard_broadcast_duration_seconds',
      help: 'Time one broadcast phase takes (send_phases per interval): diff, encode and send for the groups and slices due in it',
      labelNames: ['client_type'],
      buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    });
    hub.observe({ tick: (type, seconds) => duration.observe({ client_type: type }, seconds) });

    const { poller } = fastify;
    const requests = new client.Counter({
      name: 'dashboard_backend_requests_total',
      help: 'Polls of each backend by outcome: success, failure, timeout, rejected (breaker open, nothing sent)',
      labelNames: ['source', 'outcome'],
    });
    const requestDuration = new client.Histogram({
      name: 'dashboard_backend_request_duration_seconds',
      help: 'Time one poll of a backend took, including validation',
      labelNames: ['source'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    poller.observe({
      poll(source, outcome, seconds) {
        requests.inc({ source, outcome });
        if (outcome !== 'rejected') requestDuration.observe({ source }, seconds);
      },
    });
    // Every backend's series exist from the start, at zero for one not configured (a feature that is off): the
    // dashboard's panels and increase() in the rules need them before the first poll.
    for (const source of SOURCE_NAMES) {
      for (const outcome of POLL_OUTCOMES) requests.inc({ source, outcome }, 0);
      requestDuration.zero({ source });
    }
    const BREAKER_VALUES = { closed: 0, half_open: 1, open: 2 };
    new client.Gauge({
      name: 'dashboard_backend_breaker_state',
      help: 'Circuit breaker of each backend: 0 closed, 1 half-open, 2 open (0 for a backend not configured)',
      labelNames: ['source'],
      collect() {
        for (const name of SOURCE_NAMES) {
          const source = poller.sources.get(name);
          this.set({ source: name }, source ? BREAKER_VALUES[source.status.breaker] : 0);
        }
      },
    });
    new client.Gauge({
      name: 'dashboard_backend_configured',
      help: '1 for each backend polled (backend_services.NAME set), 0 for the others',
      labelNames: ['source'],
      collect() {
        for (const name of SOURCE_NAMES) this.set({ source: name }, poller.sources.has(name) ? 1 : 0);
      },
    });

    const { actions } = fastify;
    mirroredCounter(
      'dashboard_actions_total',
      'Trading actions by kind and outcome: accepted, rejected (by the hub or order-execution), failed (order-execution unreachable)',
      ['action', 'outcome'],
      () =>
        Object.entries(actions.counts).flatMap(([action, byOutcome]) =>
          Object.entries(byOutcome).map(([outcome, count]): [object, number] => [{ action, outcome }, count]),
        ),
    );
    // Only with a client for the actions (actions.enabled and backend_services.order_execution).
    if (actions.breaker !== undefined) {
      new client.Gauge({
        name: 'dashboard_actions_breaker_state',
        help: 'Circuit breaker of the trading actions to order-execution: 0 closed, 1 half-open, 2 open',
        collect() {
          this.set(BREAKER_VALUES[actions.breaker ?? 'closed']);
        },
      });
    }
  },
  {
    name: 'metrics',
    dependencies: [
      'hub',
      'state',
      'redis-ingest',
      'nats-ingest',
      'history',
      'access',
      'poller',
      'actions',
      'fleet-limits',
      'leader',
    ],
  },
);
