/** The calls and replies of order-execution's OrderService (proto/order.proto) the actions make, enums by name. */
import type { OrderSide, OrderType, TimeInForce } from './types.ts';

/** CreateOrderRequest of proto/order.proto, enums by name. */
export interface CreateOrderCall {
  symbol: string;
  side: OrderSide;
  type: OrderType;
  quantity: number;
  price: number;
  stop_price: number;
  time_in_force: TimeInForce;
  client_order_id: string;
  reduce_only: boolean;
  post_only: boolean;
  user_id: string;
}
/** CreateOrderResponse of proto/order.proto (`timestamp` in Unix seconds). */
export interface CreateOrderReply {
  order_id: string;
  client_order_id: string;
  state: string;
  timestamp: number;
  error_message: string;
}
export interface CancelOrderCall {
  order_id: string;
  /** '' when the client named none. */
  symbol: string;
}
export interface CancelOrderReply {
  order_id: string;
  state: string;
  timestamp: number;
  error_message: string;
}

/** order-execution's order calls. Each must honour `signal` (abort the call when it fires). */
export interface OrderBackend {
  createOrder(request: CreateOrderCall, signal?: AbortSignal): Promise<CreateOrderReply>;
  cancelOrder(request: CancelOrderCall, signal?: AbortSignal): Promise<CancelOrderReply>;
}

/**
 * order-execution answered and refused the call (a gRPC status such as INVALID_ARGUMENT): the action is
 * `rejected` with this message, not `failed`. Any other error from a backend means it could not be reached.
 */
