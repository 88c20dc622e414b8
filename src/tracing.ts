/**
 * The spans the hub makes itself (docs/tracing.md): a poll, a message applied, a trading action, a history write.
 * Only `@opentelemetry/api` here, and only its types and constants are touched while tracing is off: the SDK
 * (src/tracing-sdk.ts) hands a tracer over when `tracing.endpoint` is set, and until then `withSpan` runs its
 * function and nothing else. The fan-out (src/hub/) never traces: a span per client per tick would cost more than
 * the send itself.
 */
import { type Attributes, type Span, SpanStatusCode, type Tracer } from '@opentelemetry/api';

export type { Span };

let tracer: Tracer | undefined;
let messageRatio = 0;

/**
 * Set by the SDK when it starts (a tracer of its provider, and `tracing.message_sample_ratio`) and cleared when it
 * shuts down.
 */
export function setTracer(value: Tracer | undefined, messageSampleRatio = 0): void {
  tracer = value;
  messageRatio = messageSampleRatio;
}

/** Tracing is on. */
export function tracing(): boolean {
  return tracer !== undefined;
}

/**
 * Whether to trace this Redis or NATS message: tracing is on, and a draw at `tracing.message_sample_ratio` says
 * so. Decided here, before the SDK is asked: a span the SDK's sampler then drops still costs ~2.5 µs (ids,
 * attributes, context), half of applying a tick, where this costs a random number.
 */
export function messageSampled(): boolean {
  return tracer !== undefined && Math.random() < messageRatio;
}

export interface SpanOptions {
  /**
   * Starts a trace of its own, whatever context is active. For work a timer or a socket starts (a poll, a message,
   * a write): the context a timer captured belongs to whoever armed it, often a span long ended.
   */
  root?: boolean;
}

/**
 * Runs `fn` inside a span named `name`, the active one for everything `fn` calls or awaits (a gRPC or HTTP call made
 * inside becomes its child). A throw or a rejection marks the span as failed and passes through. With tracing off,
 * `fn(undefined)` and nothing else.
 */
export function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span | undefined) => T,
  { root = false }: SpanOptions = {},
): T {
  if (tracer === undefined) return fn(undefined);
  return tracer.startActiveSpan(name, { attributes, root }, (span) => {
    let result: T;
    try {
      result = fn(span);
    } catch (error) {
      failSpan(span, error);
      span.end();
      throw error;
    }
    if (!(result instanceof Promise)) {
      span.end();
      return result;
    }
    return result.then(
      (value) => {
        span.end();
        return value;
      },
      (error: unknown) => {
        failSpan(span, error);
        span.end();
        throw error;
      },
    ) as T;
  });
}

/** Marks a span as failed, with the error's message; a no-op without a span. */
export function failSpan(span: Span | undefined, error: unknown): void {
  if (span === undefined) return;
  const message = error instanceof Error ? error.message : String(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}
