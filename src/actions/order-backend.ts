/**
 * order-execution's CreateOrder and CancelOrder over gRPC (proto/order.proto), behind a circuit breaker of its
 * own (opossum): the OrderBackend the actions plugin gives to Actions. No Fastify here.
 */
import * as grpc from '@grpc/grpc-js';
import CircuitBreaker from 'opossum';
import type { BreakerConfig } from '../config/schema.ts';
import { apiKeyMetadata, grpcPackage } from '../grpc-protos.ts';
import type { BreakerState } from '../poller.ts';
import {
  type CancelOrderCall,
  type CancelOrderReply,
  type CreateOrderCall,
  type CreateOrderReply,
  type OrderBackend,
  OrderRefusedError,
} from './actions.ts';

/**
 * Statuses with which order-execution answers a call it refuses: nothing was placed or cancelled, and the service
 * is up, so they are `rejected` actions and do not count against the breaker. The real service answers every
 * failed CreateOrder with INVALID_ARGUMENT and every failed CancelOrder (not found, already terminal, refused
 * by the exchange) with INTERNAL (b25 services/order-execution/internal/executor/grpc_server.go).
 */
const REFUSALS = new Set<grpc.status>([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.ALREADY_EXISTS,
  grpc.status.PERMISSION_DENIED,
  grpc.status.UNAUTHENTICATED,
  grpc.status.FAILED_PRECONDITION,
  grpc.status.OUT_OF_RANGE,
  grpc.status.RESOURCE_EXHAUSTED,
]);
const CANCEL_REFUSALS = new Set<grpc.status>([...REFUSALS, grpc.status.INTERNAL]);

type Method = 'CreateOrder' | 'CancelOrder';
type UnaryCall = (
  request: object,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;

export interface GrpcOrderBackendOptions {
  /** backend_services.order_execution.url (`host:port`) */
  url: string;
  /** backend_services.order_execution.api_key: metadata `authorization: Bearer <key>` */
  apiKey?: string;
  /** actions.timeout: the call's deadline, in ms (a little later than Actions' own abort). */
  timeout: number;
  /** backend_services.order_execution.breaker */
  breaker: BreakerConfig;
}

/** CreateOrder and CancelOrder on one gRPC channel, through one breaker; one attempt per call. */
export class GrpcOrderBackend implements OrderBackend {
  readonly breaker: CircuitBreaker<[Method, object, AbortSignal | undefined], unknown>;
  private readonly client: grpc.Client;
  private readonly metadata: grpc.Metadata;
  private readonly timeout: number;

  constructor({ url, apiKey, timeout, breaker }: GrpcOrderBackendOptions) {
    const { order } = grpcPackage('order.proto');
    this.client = new order.OrderService(url, grpc.credentials.createInsecure());
    this.metadata = apiKeyMetadata(apiKey);
    this.timeout = timeout;
    this.breaker = new CircuitBreaker(
      (method: Method, request: object, signal: AbortSignal | undefined) =>
        this.unary(method, request, signal),
      {
        // The call has its own deadline; the breaker only counts.
        timeout: false,
        errorThresholdPercentage: breaker.error_threshold_percentage,
        volumeThreshold: breaker.volume_threshold,
        resetTimeout: breaker.reset_timeout,
        rollingCountTimeout: breaker.rolling_window,
        rollingCountBuckets: 10,
        // A refusal is an answer: the service is up.
        errorFilter: (error: unknown) => error instanceof OrderRefusedError,
      },
    );
  }

  get breakerState(): BreakerState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half_open' : 'closed';
  }

  createOrder(request: CreateOrderCall, signal?: AbortSignal): Promise<CreateOrderReply> {
    return this.breaker.fire('CreateOrder', request, signal) as Promise<CreateOrderReply>;
  }

  cancelOrder(request: CancelOrderCall, signal?: AbortSignal): Promise<CancelOrderReply> {
    return this.breaker.fire('CancelOrder', request, signal) as Promise<CancelOrderReply>;
  }

  close(): void {
    this.breaker.shutdown();
    this.client.close();
  }

  private unary(method: Method, request: object, signal: AbortSignal | undefined): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const refusals = method === 'CancelOrder' ? CANCEL_REFUSALS : REFUSALS;
      const onAbort = () => call.cancel();
      const call = (this.client as unknown as Record<Method, UnaryCall>)[method].call(
        this.client,
        request,
        this.metadata,
        // Later than Actions' abort at `timeout`, so a hang is reported as the timeout it is.
        { deadline: Date.now() + this.timeout + 250 },
        (error, response) => {
          signal?.removeEventListener('abort', onAbort);
          if (!error) resolve(response);
          else if (refusals.has(error.code)) reject(new OrderRefusedError(refusal(error)));
          else reject(new Error(`${method}: ${error.details || error.message}`));
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function refusal(error: grpc.ServiceError): string {
  const hint =
    error.code === grpc.status.UNAUTHENTICATED || error.code === grpc.status.PERMISSION_DENIED
      ? ' (check backend_services.order_execution.api_key)'
      : '';
  return `${error.details || error.message}${hint}`;
}
