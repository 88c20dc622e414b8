import fp from 'fastify-plugin';
import { Ingest } from '../src/ingest/ingest.ts';
import { StateStore } from '../src/state.ts';
import { SystemStatus } from '../src/system-status.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /** The aggregated state every client's view is cut from. */
    state: StateStore;
    /** The one writer of the `system` topic: the Redis side and the poller report their status to it. */
    systemStatus: SystemStatus;
    /** Applies backend payloads to the state; every source (Redis, NATS, poller) goes through it. */
    ingest: Ingest;
  }
}

/** The aggregated state, the rules that apply payloads to it, and the sweep of expired terminal orders. */
export default fp(
  async (fastify) => {
    const { ingest: options } = fastify.config;
    // The journal keeps replaced values for readers that are behind; it gets the state's budget again, no more.
    const state = new StateStore({ maxJournalBytes: options.max_state_size });
    const systemStatus = new SystemStatus(state);
    const ingest = new Ingest(state, {
      orderbookDepth: options.orderbook_depth,
      tradesKept: options.trades_kept,
      fillsKept: options.fills_kept,
      alertsKept: options.alerts_kept,
      terminalOrderRetention: options.terminal_order_retention,
      maxMessageSize: options.max_message_size,
      maxSymbols: options.max_symbols,
      symbolIdleTtl: options.symbol_idle_ttl,
      maxRecordSize: options.max_record_size,
      maxEntries: options.max_entries,
      maxStateSize: options.max_state_size,
    });
    // A quarter of the retention (or idle time) keeps removal within 25% of the promised time, never busier than 10/s.
    const sweepEvery = Math.max(
      100,
      Math.min(options.terminal_order_retention / 4, options.symbol_idle_ttl / 4, 60_000),
    );
    const sweep = setInterval(() => ingest.sweep(), sweepEvery);
    // Never the reason the process stays up (e.g. when a later plugin fails to load).
    sweep.unref();
    fastify.decorate('state', state);
    fastify.decorate('systemStatus', systemStatus);
    fastify.decorate('ingest', ingest);
    fastify.addHook('onClose', async () => clearInterval(sweep));
  },
  { name: 'state', dependencies: ['config'] },
);
