import fp from 'fastify-plugin';
import { type ActionCounts, Actions, type PositionView } from '../src/actions/actions.ts';
import { GrpcOrderBackend } from '../src/actions/order-backend.ts';
import type { ActionSubmitter } from '../src/actions/types.ts';
import type { BreakerState } from '../src/poller.ts';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Trading actions (order.create, order.cancel, position.close), checked and forwarded to order-execution.
     * Always decorated: with `actions.enabled` false every action is rejected.
     */
    actions: ActionSubmitter & {
      /** Actions by kind and outcome since start (dashboard_actions_total). */
      readonly counts: Readonly<ActionCounts>;
      /** The order-execution breaker of the actions; undefined without a backend. */
      readonly breaker: BreakerState | undefined;
    };
  }
}

/** The state's position of `symbol`, as far as closing it needs. */
function positionView(value: unknown): PositionView | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { side, quantity } = value as { side?: unknown; quantity?: unknown };
  const view: PositionView = {};
  if (typeof side === 'string') view.side = side;
  if (typeof quantity === 'number' || typeof quantity === 'string') view.quantity = Number(quantity);
  return view;
}

/**
 * The trading actions: an Actions over the state (risk, positions) and, when `actions.enabled` and
 * backend_services.order_execution are set, a gRPC client of order-execution, closed with the app. Each action
 * is logged once, as `{ audit: 'action', user, role, action, … }`.
 */
export default fp(
  async (fastify) => {
    const { actions: config, backend_services: backends } = fastify.config;
    const { state, log } = fastify;
    const orderConfig = backends.order_execution;
    const backend =
      config.enabled && orderConfig
        ? new GrpcOrderBackend({
            url: orderConfig.url!,
            apiKey: orderConfig.api_key,
            timeout: config.timeout,
            breaker: orderConfig.breaker,
          })
        : undefined;
    const actions = new Actions({
      enabled: config.enabled,
      roles: config.roles,
      rateLimit: config.rate_limit,
      timeout: config.timeout,
      risk: () => state.get('risk'),
      position: (symbol) => positionView(state.get('positions', symbol)),
      backend,
      audit: (line) => log.info({ audit: 'action', ...line }, 'trading action'),
    });
    fastify.decorate('actions', {
      submit: (principal, request) => actions.submit(principal, request),
      get counts() {
        return actions.counts;
      },
      get breaker() {
        return backend?.breakerState;
      },
    });
    fastify.addHook('onClose', async () => backend?.close());
  },
  { name: 'actions', dependencies: ['config', 'state'] },
);
