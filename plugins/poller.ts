import * as grpc from '@grpc/grpc-js';
import fp from 'fastify-plugin';
import { Pool } from 'undici';
import {
  accountFromResponse,
  ordersFromResponse,
  riskFromResponses,
  type SourceName,
  strategiesFromResponses,
} from '../src/backends.ts';
import type { BackendConfig } from '../src/config/schema.ts';
import { apiKeyMetadata, grpcPackage } from '../src/grpc-protos.ts';
import type { Json } from '../src/merge-patch.ts';
import { PolledSource, type PollOutcome } from '../src/poller.ts';

declare module 'fastify' {
  interface FastifyInstance {
    poller: {
      readonly sources: ReadonlyMap<SourceName, PolledSource>;
      /** Polls every source soon (jittered): at start, after a Redis reconnect, when a breaker closes. */
      pollAll(): void;
      /** Polls these sources soon (jittered), those configured: after a NATS reconnect, orders and risk. */
      refresh(...names: SourceName[]): void;
      /** Adds an observer (the metrics plugin); returns a function that removes it. */
      observe(observer: PollObserver): () => void;
    };
  }
}

/** What a plugin may watch of the poller, without assigning anything onto it. */
export interface PollObserver {
  /** After each poll of a source, with its outcome and how long it took. */
  poll?(name: SourceName, outcome: PollOutcome, seconds: number): void;
}

/** A non-2xx answer from an HTTP backend (its message names the status, and the key to check for 401/403). */
export class BackendHttpError extends Error {}

type UnaryCall = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: unknown) => void,
) => void;

/** One unary gRPC call with a deadline, cancelled when `signal` aborts. */
function unary(
  client: grpc.Client,
  method: string,
  request: object,
  metadata: grpc.Metadata,
  timeout: number,
  signal: AbortSignal,
) {
  return new Promise<unknown>((resolve, reject) => {
    const call = (client as unknown as Record<string, UnaryCall>)[method].call(
      client,
      request,
      metadata,
      // Later than the poller's own abort at `timeout`, so a hang is reported as the timeout it is.
      { deadline: Date.now() + timeout + 500 },
      (error, response) =>
        error ? reject(new Error(`${method}: ${error.details || error.message}`)) : resolve(response),
    ) as unknown as grpc.ClientUnaryCall;
    signal.addEventListener('abort', () => call.cancel(), { once: true });
  });
}

/** GET a JSON document through a pool; the body is always consumed, so the connection is reused. */
async function getJson(
  pool: Pool,
  path: string,
  headers: Record<string, string>,
  signal: AbortSignal,
  name: string,
) {
  const response = await pool.request({ method: 'GET', path, headers, signal });
  if (response.statusCode !== 200) {
    await response.body.dump();
    const hint =
      response.statusCode === 401 || response.statusCode === 403
        ? `: configuration error, check backend_services.${name}.api_key`
        : '';
    throw new BackendHttpError(`GET ${path} answered ${response.statusCode}${hint}`);
  }
  try {
    return await response.body.json();
  } catch {
    throw new Error(`GET ${path}: body is not valid JSON`);
  }
}

/**
 * The backend poller: each configured backend is polled on its own schedule through its own breaker, and its
 * results go into the state through the same Ingest as Redis messages. Status per source in `system.sources`.
 */
export default fp(
  async (fastify) => {
    const { backend_services: backends } = fastify.config;
    const { ingest, systemStatus, log, leader } = fastify;
    const sources = new Map<SourceName, PolledSource>();
    const localSources = new Set<SourceName>();
    const observers = new Set<PollObserver>();
    const closers: (() => unknown)[] = [];

    const grpcMetadata = (config: BackendConfig) => apiKeyMetadata(config.api_key);
    const apiKeyHeader = (config: BackendConfig): Record<string, string> =>
      config.api_key ? { 'x-api-key': config.api_key } : {};
    const httpPool = (config: BackendConfig) => {
      const pool = new Pool(config.url!, {
        connections: 2,
        headersTimeout: config.timeout,
        bodyTimeout: config.timeout,
        connectTimeout: config.timeout,
      });
      closers.push(() => pool.destroy());
      return pool;
    };

    /** What a replica that does not lead does with a relayed poll: parse the answers as the leader did, apply. */
    const relayed = new Map<SourceName, (answers: unknown[], startedAt: number) => void>();

    /**
     * A polled backend: `call` asks it (one answer per request), `parse` checks and maps the answers, `apply` writes
     * the result. The leader relays the answers and each status to the other replicas; `local` sources are polled
     * by every replica and relayed by none (market data reads this replica's own Redis).
     */
    function add<T>(
      name: SourceName,
      config: BackendConfig,
      call: (signal: AbortSignal) => Promise<unknown[]>,
      parse: (answers: unknown[]) => T,
      apply: (result: T, startedAt: number) => void,
      { local = false } = {},
    ) {
      if (local) localSources.add(name);
      else relayed.set(name, (answers, startedAt) => apply(parse(answers), startedAt));
      sources.set(
        name,
        new PolledSource<{ answers: unknown[]; result: T }>({
          name,
          interval: config.interval,
          timeout: config.timeout,
          breaker: config.breaker,
          fetch: async (signal) => {
            const answers = await call(signal);
            return { answers, result: parse(answers) };
          },
          apply: ({ answers, result }, startedAt) => {
            apply(result, startedAt);
            if (!local) leader.publishData(name, startedAt, answers as Json[]);
          },
          onStatus: (source, status) => {
            systemStatus.reportSource(source, status);
            if (!local) leader.publishStatus(source, status);
          },
          onPoll: (source, outcome, seconds) => {
            for (const observer of observers) observer.poll?.(source, outcome, seconds);
          },
          onRecovered: () => poller.pollAll(),
          logger: log,
        }) as PolledSource,
      );
    }

    const orderConfig = backends.order_execution;
    if (orderConfig) {
      const { order } = grpcPackage('order.proto');
      const client = new order.OrderService(orderConfig.url!, grpc.credentials.createInsecure());
      closers.push(() => client.close());
      const limit = orderConfig.limit!;
      add(
        'order_execution',
        orderConfig,
        async (signal) => {
          const request = { symbol: '', state: 'STATE_UNSPECIFIED', start_time: 0, end_time: 0, limit };
          return [
            await unary(client, 'GetOrders', request, grpcMetadata(orderConfig), orderConfig.timeout, signal),
          ];
        },
        ([response]) => ordersFromResponse(response),
        (orders, startedAt) => {
          // A full page may be cut short by `limit`: then orders missing from it are not taken as gone.
          const complete = orders.length < limit;
          if (!complete) {
            log.warn(
              { limit },
              'backend order_execution: GetOrders returned `limit` orders; raise backend_services.order_execution.limit',
            );
          }
          ingest.replaceSection('orders', orders, startedAt, complete);
        },
      );
    }

    const riskConfig = backends.risk_manager;
    if (riskConfig) {
      const { riskmanager } = grpcPackage('risk.proto');
      const client = new riskmanager.RiskManager(riskConfig.url!, grpc.credentials.createInsecure());
      closers.push(() => client.close());
      add(
        'risk_manager',
        riskConfig,
        async (signal) => {
          const metadata = grpcMetadata(riskConfig);
          return Promise.all([
            unary(
              client,
              'GetRiskMetrics',
              { account_id: riskConfig.account_id },
              metadata,
              riskConfig.timeout,
              signal,
            ),
            unary(client, 'GetEmergencyStopStatus', {}, metadata, riskConfig.timeout, signal),
          ]);
        },
        ([metrics, stop]) => riskFromResponses(metrics, stop),
        (risk) => ingest.replaceSingle('risk', risk),
      );
    }

    const accountConfig = backends.account_monitor;
    if (accountConfig) {
      const pool = httpPool(accountConfig);
      add(
        'account_monitor',
        accountConfig,
        async (signal) => [
          await getJson(pool, '/api/account', apiKeyHeader(accountConfig), signal, 'account_monitor'),
        ],
        ([body]) => accountFromResponse(body),
        ({ account, positions }, startedAt) => ingest.replaceAccount(account, positions, startedAt),
      );
    }

    const strategyConfig = backends.strategy_engine;
    if (strategyConfig) {
      const pool = httpPool(strategyConfig);
      const headers = apiKeyHeader(strategyConfig);
      add(
        'strategy_engine',
        strategyConfig,
        async (signal) =>
          Promise.all([
            getJson(pool, '/status', headers, signal, 'strategy_engine'),
            getJson(pool, '/api/service-info', headers, signal, 'strategy_engine'),
          ]),
        ([status, info]) => strategiesFromResponses(status, info),
        (strategies, startedAt) => ingest.replaceSection('strategies', strategies, startedAt),
      );
    }

    const marketConfig = backends.market_data;
    if (marketConfig) {
      // The market data service's truth is in the Redis keys; its HTTP port has only /health.
      add(
        'market_data',
        marketConfig,
        async () => {
          await fastify.redisIngest.reload();
          return [];
        },
        () => undefined,
        () => {},
        { local: true },
      );
    }

    /** The leader polls; so does a replica cut off from Redis (nobody relays to it); the others apply the relay. */
    const polls = () => leader.isLeader || leader.isolated;
    let started = false;
    function followLeadership(): void {
      if (!started) return;
      for (const [name, source] of sources) {
        if (localSources.has(name)) continue;
        if (polls() && !source.running) source.start();
        else if (!polls() && source.running) source.pause();
      }
    }
    leader.events.on('change', followLeadership);
    leader.events.on('isolated', followLeadership);
    leader.receive({
      data({ source, answers, started_at }) {
        const apply = relayed.get(source);
        apply?.(answers, started_at);
        return apply !== undefined;
      },
      status({ source: name, status }) {
        const source = sources.get(name);
        if (!source || !relayed.has(name)) return false;
        source.adopt(status);
        systemStatus.reportSource(name, source.status);
        return true;
      },
    });

    const poller = {
      sources,
      // A source this replica does not poll ignores pollSoon(); it asks for the leader's kept copies instead.
      pollAll() {
        if (!polls()) leader.resync();
        for (const source of sources.values()) source.pollSoon();
      },
      refresh(...names: SourceName[]) {
        if (!polls()) leader.resync();
        for (const name of names) sources.get(name)?.pollSoon();
      },
      observe(observer: PollObserver) {
        observers.add(observer);
        return () => observers.delete(observer);
      },
    };
    fastify.decorate('poller', poller);

    fastify.addHook('onReady', async () => {
      started = true;
      for (const name of localSources) sources.get(name)?.start();
      followLeadership();
      // After a Redis outage, messages published meanwhile are lost: refresh from the backends.
      fastify.redisIngest.events.on('status', (status: string) => {
        if (status === 'up' && fastify.redisIngest.info.reconnects > 0) poller.pollAll();
      });
    });
    fastify.addHook('onClose', async () => {
      for (const source of sources.values()) source.stop();
      for (const close of closers) await close();
    });
  },
  { name: 'poller', dependencies: ['config', 'state', 'redis-ingest', 'leader'] },
);
