// Over 350 lines: every refusal rule and both calls' outcomes in one place, in the order they apply.
/**
 * Trading actions: who may act, how often, and what is sent to order-execution. No Fastify and no gRPC here:
 * the backend is an OrderBackend (plugins/actions.ts gives the gRPC one, order-backend.ts), the state is read
 * through two callbacks, and every action ends in one ActionResult, one audit line and one count.
 */
import { randomBytes } from 'node:crypto';
import type { Principal } from '../access.ts';
import { failSpan, type Span, withSpan } from '../tracing.ts';
import type {
  CancelOrderCall,
  CancelOrderReply,
  CreateOrderCall,
  CreateOrderReply,
  OrderBackend,
} from './order-calls.ts';
import {
  ACTION_KINDS,
  type ActionKind,
  type ActionRequest,
  type ActionResult,
  type ActionSubmitter,
  type OrderSide,
} from './types.ts';
import { UserRateLimit } from './user-rate-limit.ts';

export type { CancelOrderCall, CancelOrderReply, CreateOrderCall, CreateOrderReply, OrderBackend };

export const ACTION_OUTCOMES = ['accepted', 'rejected', 'failed'] as const;
export type ActionOutcome = ActionResult['outcome'];
/** How many actions of each kind ended in each outcome, since start. */
export type ActionCounts = Record<ActionKind, Record<ActionOutcome, number>>;

export class OrderRefusedError extends Error {
  override name = 'OrderRefusedError';
}

/** The state's view of one position, as far as closing it needs. */
export interface PositionView {
  side?: string;
  quantity?: number;
}

export interface ActionsOptions {
  /** actions.enabled */
  enabled: boolean;
  /** actions.roles: the roles that may act. */
  roles: string[];
  /** actions.rate_limit: at most `max` actions per `window` ms per user. */
  rateLimit: { max: number; window: number };
  /** actions.timeout: ms to wait for order-execution before the action `failed` (and the call is aborted). */
  timeout?: number;
  now?: () => number;
  /** The state's `risk` section (its `emergency_stop.is_stopped` refuses new orders and closes). */
  risk: () => unknown;
  /** The state's position of a symbol, or undefined. */
  position: (symbol: string) => PositionView | undefined;
  /** undefined: no backend_services.order_execution, every action is refused. */
  backend: OrderBackend | undefined;
  /** One line per action, for the log. */
  audit: (line: object) => void;
  /** The client_order_id of an order; `dash-` and 16 random hex digits by default. */
  newId?: () => string;
  /** Most users whose rate window is remembered (the oldest are forgotten first). */
  maxTrackedUsers?: number;
}

const DEFAULT_TIMEOUT = 5000;
const DEFAULT_MAX_TRACKED_USERS = 10_000;
const MAX_REASON_LENGTH = 300;

function emergencyStopped(risk: unknown): boolean {
  if (typeof risk !== 'object' || risk === null) return false;
  const stop = (risk as { emergency_stop?: unknown }).emergency_stop;
  return typeof stop === 'object' && stop !== null && (stop as { is_stopped?: unknown }).is_stopped === true;
}

/** One line, bounded, for a reason a user and the log read. */
function clean(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > MAX_REASON_LENGTH ? `${line.slice(0, MAX_REASON_LENGTH)}…` : line;
}

/** The side that closes a position: a long one is sold, a short one bought; no side: the sign of quantity. */
function closingSide({ side, quantity }: { side: string; quantity: number }): OrderSide {
  if (side === 'LONG' || side === 'BUY') return 'SELL';
  if (side === 'SHORT' || side === 'SELL') return 'BUY';
  return quantity > 0 ? 'SELL' : 'BUY';
}

/** The outcome on the action's span, and what finds the order again (never the user or a token). */
function traceResult(span: Span, result: ActionResult): void {
  span.setAttribute('dashboard.outcome', result.outcome);
  if (result.symbol !== undefined) span.setAttribute('dashboard.symbol', result.symbol);
  if (result.clientOrderId !== undefined)
    span.setAttribute('dashboard.client_order_id', result.clientOrderId);
  if (result.orderId !== undefined) span.setAttribute('dashboard.order_id', result.orderId);
  if (result.state !== undefined) span.setAttribute('dashboard.order_state', result.state);
  if (result.reason !== undefined) span.setAttribute('dashboard.reason', result.reason);
  // A refusal (by the hub or by order-execution) is an answer; only an action that could not be carried out failed.
  if (result.outcome === 'failed') failSpan(span, result.reason);
}

/** An order-execution call that did not answer within the timeout. */
class ActionTimeoutError extends Error {}

type Planned =
  | { reason: string }
  | { create: CreateOrderCall; request: ActionRequest }
  | { cancel: CancelOrderCall; request: ActionRequest };

/**
 * Checks an action and forwards it to order-execution. Refusals, in order: disabled, token-less, role, rate,
 * no backend, emergency stop (orders and closes; cancels still pass), no position to close. One attempt per
 * action; `submit` never throws.
 */
export class Actions implements ActionSubmitter {
  private readonly options: ActionsOptions;
  private readonly rate: UserRateLimit;
  private readonly now: () => number;
  private readonly newId: () => string;
  private readonly timeout: number;
  private readonly roles: ReadonlySet<string>;
  private readonly tally = Object.fromEntries(
    ACTION_KINDS.map((kind) => [kind, { accepted: 0, rejected: 0, failed: 0 }]),
  ) as ActionCounts;

  constructor(options: ActionsOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.newId = options.newId ?? (() => `dash-${randomBytes(8).toString('hex')}`);
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this.roles = new Set(options.roles);
    this.rate = new UserRateLimit(
      options.rateLimit.max,
      options.rateLimit.window,
      options.maxTrackedUsers ?? DEFAULT_MAX_TRACKED_USERS,
    );
  }

  /** Actions by kind and outcome (for dashboard_actions_total). */
  get counts(): Readonly<ActionCounts> {
    return this.tally;
  }

  /** How many users' rate windows are remembered. */
  get trackedUsers(): number {
    return this.rate.size;
  }

  /** Traced from receipt to answer: a span per action, the call to order-execution its child. */
  submit(principal: Principal, request: ActionRequest): Promise<ActionResult> {
    const attributes = { 'dashboard.action': request.kind, 'dashboard.role': principal.role };
    return withSpan(`action ${request.kind}`, attributes, (span) =>
      this.submitTraced(principal, request, span),
    );
  }

  private async submitTraced(
    principal: Principal,
    request: ActionRequest,
    span: Span | undefined,
  ): Promise<ActionResult> {
    let result: ActionResult;
    let sent: CreateOrderCall | CancelOrderCall | undefined;
    try {
      const planned = this.plan(principal, request);
      if ('reason' in planned) {
        result = this.refused(request, planned.reason);
      } else if ('create' in planned) {
        sent = planned.create;
        result = await this.create(request.kind, planned.create);
      } else {
        sent = planned.cancel;
        result = await this.cancel(planned.cancel);
      }
    } catch (error) {
      // A bug or a throwing callback must not leave the client without an answer.
      result = {
        kind: request.kind,
        outcome: 'failed',
        reason: clean(`internal error: ${(error as Error)?.message ?? String(error)}`),
        at: this.now(),
      };
    }
    this.tally[result.kind][result.outcome]++;
    if (span) traceResult(span, result);
    try {
      this.options.audit(this.auditLine(principal, request, sent, result));
    } catch {
      // The result stands; a logger that throws is not the client's concern.
    }
    return result;
  }

  private plan(principal: Principal, request: ActionRequest): Planned {
    const { options } = this;
    if (!options.enabled) return { reason: 'actions are disabled (actions.enabled)' };
    if (principal.tokenless) return { reason: 'a connection without a token cannot act; sign in' };
    if (!this.roles.has(principal.role)) {
      return { reason: `role ${JSON.stringify(principal.role)} may not act (actions.roles)` };
    }
    if (!this.rate.take(principal.userId, this.now())) {
      const { max, window } = options.rateLimit;
      return { reason: `too many actions: at most ${max} per ${window}ms (actions.rate_limit)` };
    }
    if (!options.backend) return { reason: 'no order-execution backend is configured' };
    if (request.kind === 'order.cancel') {
      return { request, cancel: { order_id: request.orderId, symbol: request.symbol ?? '' } };
    }
    if (emergencyStopped(options.risk())) {
      return {
        reason: 'the emergency stop is active: no new orders or position closes (cancels still allowed)',
      };
    }
    if (request.kind === 'order.create') {
      return {
        request,
        create: {
          symbol: request.symbol,
          side: request.side,
          type: request.type,
          quantity: request.quantity,
          price: request.price ?? 0,
          stop_price: request.stopPrice ?? 0,
          // order-execution takes an unset time in force as GTC, and refuses GTC for a MARKET order.
          time_in_force: request.timeInForce ?? (request.type === 'MARKET' ? 'IOC' : 'GTC'),
          client_order_id: this.newId(),
          reduce_only: false,
          post_only: false,
          user_id: principal.userId,
        },
      };
    }
    const position = options.position(request.symbol);
    const quantity = Number(position?.quantity);
    if (!position || !Number.isFinite(quantity) || quantity === 0) {
      return { reason: `no open position for ${request.symbol}` };
    }
    return {
      request,
      create: {
        symbol: request.symbol,
        side: closingSide({ side: String(position.side ?? '').toUpperCase(), quantity }),
        type: 'MARKET',
        quantity: Math.abs(quantity),
        price: 0,
        stop_price: 0,
        time_in_force: 'IOC',
        client_order_id: this.newId(),
        reduce_only: true,
        post_only: false,
        user_id: principal.userId,
      },
    };
  }

  private refused(request: ActionRequest, reason: string): ActionResult {
    const result: ActionResult = { kind: request.kind, outcome: 'rejected', reason, at: this.now() };
    if ('symbol' in request && request.symbol !== undefined) result.symbol = request.symbol;
    return result;
  }

  private async create(kind: ActionKind, call: CreateOrderCall): Promise<ActionResult> {
    const backend = this.options.backend!;
    const result: ActionResult = {
      kind,
      outcome: 'accepted',
      clientOrderId: call.client_order_id,
      symbol: call.symbol,
      side: call.side,
      type: call.type,
      quantity: call.quantity,
      at: 0,
    };
    if (call.price > 0) result.price = call.price;
    try {
      const reply = await this.withTimeout((signal) => backend.createOrder(call, signal));
      this.applyReply(result, reply);
    } catch (error) {
      this.applyError(result, error);
    }
    result.at = this.now();
    return result;
  }

  private async cancel(call: CancelOrderCall): Promise<ActionResult> {
    const backend = this.options.backend!;
    const result: ActionResult = { kind: 'order.cancel', outcome: 'accepted', orderId: call.order_id, at: 0 };
    if (call.symbol !== '') result.symbol = call.symbol;
    try {
      const reply = await this.withTimeout((signal) => backend.cancelOrder(call, signal));
      this.applyReply(result, reply);
    } catch (error) {
      this.applyError(result, error);
    }
    result.at = this.now();
    return result;
  }

  /** An answer: `error_message` or state REJECTED is a refusal; anything else the order (or cancel) taken. */
  private applyReply(result: ActionResult, reply: CreateOrderReply | CancelOrderReply): void {
    if (typeof reply !== 'object' || reply === null) {
      result.outcome = 'failed';
      result.reason = 'order-execution unavailable: its answer was not a response object';
      return;
    }
    const orderId = typeof reply.order_id === 'string' ? reply.order_id : '';
    const state = typeof reply.state === 'string' ? reply.state : '';
    const error = typeof reply.error_message === 'string' ? clean(reply.error_message) : '';
    if (orderId !== '') result.orderId = orderId;
    if (state !== '') result.state = state;
    if (error !== '' || state === 'REJECTED') {
      result.outcome = 'rejected';
      result.reason = `order-execution rejected it: ${error || 'state REJECTED'}`;
    }
  }

  private applyError(result: ActionResult, error: unknown): void {
    if (error instanceof OrderRefusedError) {
      result.outcome = 'rejected';
      result.reason = clean(`order-execution rejected it: ${error.message}`);
      return;
    }
    result.outcome = 'failed';
    const code = (error as { code?: unknown } | undefined)?.code;
    const why =
      error instanceof ActionTimeoutError
        ? error.message
        : code === 'EOPENBREAKER'
          ? 'circuit open, no request sent'
          : ((error as Error)?.message ?? String(error));
    result.reason = clean(`order-execution unavailable: ${why}`);
  }

  /** Runs one backend call, aborted after the timeout; a late answer is ignored. */
  private async withTimeout<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const abort = new AbortController();
    const pending = call(abort.signal);
    // The call may still settle (cancelled) after the timeout won the race.
    pending.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new ActionTimeoutError(`no answer within ${this.timeout}ms`);
        abort.abort(error);
        reject(error);
      }, this.timeout);
    });
    try {
      return await Promise.race([pending, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One audit line: who, what, the order and the outcome; never a token. */
  private auditLine(
    principal: Principal,
    request: ActionRequest,
    sent: CreateOrderCall | CancelOrderCall | undefined,
    result: ActionResult,
  ): object {
    const line: Record<string, unknown> = {
      user: principal.userId,
      role: principal.role,
      action: request.kind,
    };
    const symbol = sent?.symbol || ('symbol' in request ? request.symbol : undefined);
    if (symbol) line.symbol = symbol;
    if (sent && 'side' in sent) {
      line.side = sent.side;
      line.type = sent.type;
      line.quantity = sent.quantity;
      if (sent.price > 0) line.price = sent.price;
      if (sent.reduce_only) line.reduce_only = true;
      line.client_order_id = sent.client_order_id;
    }
    line.outcome = result.outcome;
    const orderId = result.orderId ?? (request.kind === 'order.cancel' ? request.orderId : undefined);
    if (orderId !== undefined) line.order_id = orderId;
    if (result.state !== undefined) line.state = result.state;
    if (result.reason !== undefined) line.reason = result.reason;
    return line;
  }
}
