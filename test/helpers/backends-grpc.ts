import * as grpc from '@grpc/grpc-js';
import { grpcPackage } from '../../src/grpc-protos.ts';

/**
 * A real in-process gRPC server standing in for order-execution (order.OrderService: GetOrders, CreateOrder,
 * CancelOrder) and risk-manager (riskmanager.RiskManager), built from the project's own proto files, bound to
 * 127.0.0.1 on a free port.
 * Each method answers through a handler the test sets (and may change at any time); every call is recorded.
 */

export type GrpcMethod =
  | 'GetOrders'
  | 'CreateOrder'
  | 'CancelOrder'
  | 'GetRiskMetrics'
  | 'GetEmergencyStopStatus';

export interface GrpcCall {
  method: GrpcMethod;
  request: Record<string, unknown>;
  metadata: Record<string, grpc.MetadataValue[]>;
  /** Resolves if the client cancels the call (deadline or abort). */
  cancelled: Promise<void>;
}

/** What a handler returns: a response object, or a promise of one; a thrown GrpcFailure is sent as a status. */
export type GrpcHandler = (call: GrpcCall) => unknown;

/** A gRPC status to fail a call with. */
export class GrpcFailure extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, details: string) {
    super(details);
    this.code = code;
  }
}

/** A handler that never answers: the call stays open until the client gives up or the server closes. */
export const hangGrpc: GrpcHandler = () => new Promise(() => {});

export class GrpcBackend {
  readonly server: grpc.Server;
  readonly port: number;
  readonly calls: GrpcCall[] = [];
  handlers: Partial<Record<GrpcMethod, GrpcHandler>>;
  private readonly waiters: { method: GrpcMethod | undefined; resolve: (call: GrpcCall) => void }[] = [];

  private constructor(server: grpc.Server, port: number, handlers: Partial<Record<GrpcMethod, GrpcHandler>>) {
    this.server = server;
    this.port = port;
    this.handlers = handlers;
  }

  /** `127.0.0.1:PORT`, as backend_services.<name>.url wants it. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(handlers: Partial<Record<GrpcMethod, GrpcHandler>> = {}): Promise<GrpcBackend> {
    const server = new grpc.Server();
    // Loaded as the hub loads them (src/grpc-protos.ts): the server speaks exactly what the hub decodes.
    const load = (file: string) =>
      grpcPackage(file) as unknown as Record<string, Record<string, { service: grpc.ServiceDefinition }>>;
    const { order } = load('order.proto');
    const { riskmanager } = load('risk.proto');
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    const backend = new GrpcBackend(server, port, handlers);
    server.addService(order.OrderService.service, {
      GetOrders: backend.unary('GetOrders'),
      CreateOrder: backend.unary('CreateOrder'),
      CancelOrder: backend.unary('CancelOrder'),
    });
    server.addService(riskmanager.RiskManager.service, {
      GetRiskMetrics: backend.unary('GetRiskMetrics'),
      GetEmergencyStopStatus: backend.unary('GetEmergencyStopStatus'),
    });
    return backend;
  }

  /** How many calls of `method` (of any method when omitted) reached the server so far. */
  hits(method?: GrpcMethod): number {
    return method === undefined ? this.calls.length : this.calls.filter((c) => c.method === method).length;
  }

  /** Resolves with the next call of `method` (of any method when omitted) that reaches the server. */
  nextCall(method?: GrpcMethod, timeoutMs = 5000): Promise<GrpcCall> {
    return new Promise((resolve, reject) => {
      const waiter = {
        method,
        resolve: (call: GrpcCall) => {
          clearTimeout(timer);
          resolve(call);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no ${method ?? 'gRPC'} call reached the server within ${timeoutMs}ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Ends every open call and stops the server. */
  close(): void {
    this.server.forceShutdown();
  }

  private unary(method: GrpcMethod): grpc.handleUnaryCall<Record<string, unknown>, unknown> {
    return (serverCall, callback) => {
      const call: GrpcCall = {
        method,
        request: serverCall.request,
        metadata: serverCall.metadata.toJSON(),
        cancelled: new Promise((resolve) => serverCall.once('cancelled', () => resolve())),
      };
      this.calls.push(call);
      for (const waiter of [...this.waiters]) {
        if (waiter.method !== undefined && waiter.method !== method) continue;
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(call);
      }
      const handler = this.handlers[method];
      if (!handler) {
        callback({ code: grpc.status.UNIMPLEMENTED, details: `no handler for ${method}` });
        return;
      }
      Promise.resolve()
        .then(() => handler(call))
        .then(
          (response) => callback(null, response),
          (error: unknown) =>
            callback({
              code: error instanceof GrpcFailure ? error.code : grpc.status.INTERNAL,
              details: (error as Error).message,
            }),
        );
    };
  }
}

/** A complete order as order-execution sends it (enum names, times in Unix seconds). */
export function grpcOrder(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    order_id: 'ord-1',
    client_order_id: 'cli-1',
    symbol: 'BTCUSDT',
    side: 'BUY',
    type: 'LIMIT',
    state: 'NEW',
    time_in_force: 'GTC',
    quantity: 0.5,
    price: 50000,
    stop_price: 0,
    filled_quantity: 0,
    average_price: 0,
    fee: 0,
    fee_asset: 'USDT',
    created_at: 1_700_000_000,
    updated_at: 1_700_000_000,
    user_id: 'user-1',
    reduce_only: false,
    post_only: false,
    exchange_order_id: 'ex-1',
    ...fields,
  };
}

/** A GetRiskMetrics answer. */
export function riskMetricsResponse(metrics: Record<string, unknown> = {}, timestamp = 1_700_000_100) {
  return {
    metrics: {
      margin_ratio: 0.25,
      leverage: 3,
      drawdown_daily: 0.02,
      drawdown_max: 0.1,
      daily_pnl: 125.5,
      unrealized_pnl: -40.25,
      total_equity: 10000,
      total_margin_used: 2500,
      position_concentration: { BTCUSDT: 0.6, ETHUSDT: 0.4 },
      limit_utilization: { leverage: 0.3 },
      open_positions: 2,
      pending_orders: 1,
      ...metrics,
    },
    timestamp,
  };
}

/** Go's zero time.Time in Unix seconds, as the risk manager sends an unset time. */
export const GO_ZERO_TIME = -62135596800;

/** A GetEmergencyStopStatus answer. */
export function emergencyStopResponse(status: Record<string, unknown> = {}) {
  return {
    status: {
      is_stopped: false,
      stopped_at: GO_ZERO_TIME,
      stop_reason: '',
      triggered_by: '',
      orders_canceled: 0,
      positions_closed: 0,
      completed: false,
      completed_at: GO_ZERO_TIME,
      ...status,
    },
  };
}
