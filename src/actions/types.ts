/**
 * Trading actions as every wire protocol hands them to the hub: an order to place, an order to cancel, a position to
 * close. The protocols parse their own message forms into an ActionRequest (request.ts checks the fields); the
 * actions plugin forwards it to order-execution and answers with an ActionResult, which each protocol renders.
 */

import type { Principal } from '../access.ts';

export const ORDER_SIDES = ['BUY', 'SELL'] as const;
export const ORDER_TYPES = ['LIMIT', 'MARKET', 'STOP_LIMIT', 'STOP_MARKET'] as const;
export const TIMES_IN_FORCE = ['GTC', 'IOC', 'FOK'] as const;
export type OrderSide = (typeof ORDER_SIDES)[number];
export type OrderType = (typeof ORDER_TYPES)[number];
export type TimeInForce = (typeof TIMES_IN_FORCE)[number];

export const ACTION_KINDS = ['order.create', 'order.cancel', 'position.close'] as const;
export type ActionKind = (typeof ACTION_KINDS)[number];

export type ActionRequest =
  | {
      kind: 'order.create';
      symbol: string;
      side: OrderSide;
      type: OrderType;
      quantity: number;
      price?: number;
      stopPrice?: number;
      timeInForce?: TimeInForce;
    }
  | { kind: 'order.cancel'; orderId: string; symbol?: string }
  | { kind: 'position.close'; symbol: string };

/**
 * What came of one action. `accepted`: order-execution took it and answered with the order's id and `state`;
 * `rejected`: refused by the hub (disabled, role, token-less, rate, emergency stop, no such position) or by
 * order-execution (an `error_message`, state REJECTED, or a refusing gRPC status: `reason` says why, `state` is
 * kept); `failed`: order-execution could not be reached in time (breaker open, deadline, transport error): the
 * order may or may not exist, `clientOrderId` finds it.
 */
export interface ActionResult {
  kind: ActionKind;
  outcome: 'accepted' | 'rejected' | 'failed';
  /** The id the hub gave the action (every retry of it carries the same one), when an order was asked for. */
  clientOrderId?: string;
  orderId?: string;
  /** The order's state as order-execution reported it (`NEW`, `CANCELED`, `REJECTED`, …). */
  state?: string;
  symbol?: string;
  side?: OrderSide;
  type?: OrderType;
  quantity?: number;
  price?: number;
  /** Why it was rejected or failed; never holds a token. */
  reason?: string;
  /** When the result was known, in ms since the epoch. */
  at: number;
}

/** Who acts on requests: the actions plugin. `principal` is the connection's (its `tokenless` flag included). */
export interface ActionSubmitter {
  submit(principal: Principal, request: ActionRequest): Promise<ActionResult>;
}
