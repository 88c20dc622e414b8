/**
 * The OpenTelemetry SDK, loaded only when `tracing.endpoint` is set (src/server.ts, plugins/tracing.ts): a tracer
 * provider exporting OTLP/HTTP JSON to `<endpoint>/v1/traces` in batches, sampled per trace by
 * `tracing.sample_ratio` (ingest messages thinned first by `tracing.message_sample_ratio`), the async-local context, a
 * traceparent sent to the backends, and the client instrumentations of ioredis, @grpc/grpc-js and undici.
 *
 * ioredis and @grpc/grpc-js are patched as they load: in this ES module app that takes a loader hook
 * (import-in-the-middle, registered here), so the SDK must start before anything imports them. src/server.ts
 * starts it before it imports the app; a process that loaded them first gets every span but theirs
 * (`TracingSdk.unpatched` names them). undici reports its requests on diagnostics channels: traced either way.
 */
import { createRequire, register } from 'node:module';
import { hostname } from 'node:os';
import {
  type Context,
  context,
  diag,
  isSpanContextValid,
  propagation,
  type TextMapPropagator,
  type TextMapSetter,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { Config } from './config/schema.ts';
import { setTracer } from './tracing.ts';

export const SERVICE_NAME = 'dashboard-server';
/** Longest wait at shutdown for the last spans to be exported. */
const SHUTDOWN_EXPORT_MS = 2000;
/** Patched as they load (import-in-the-middle): they must not be loaded before the SDK starts. */
const PATCHED_MODULES = ['ioredis', '@grpc/grpc-js'] as const;

export type TracingConfig = Config['tracing'] & { endpoint: string };

export interface TracingSdk {
  readonly provider: TracerProvider;
  /** Where spans go: `<endpoint>/v1/traces`. */
  readonly url: string;
  /** Of PATCHED_MODULES, those loaded before the SDK started: no client spans for their calls. */
  readonly unpatched: readonly string[];
  /** Exports every span ended so far. */
  forceFlush(): Promise<void>;
  /** Exports what is left, unpatches the modules and clears the global tracer, context and propagator. */
  shutdown(): Promise<void>;
}

let current: TracingSdk | undefined;
let loaderRegistered = false;

/**
 * A trace begins in the hub, always: a `traceparent` from a client is not believed (it would let anyone have every
 * request of theirs recorded), and the hub's own goes out with each gRPC and HTTP call to a backend, which can then
 * continue the trace (W3C Trace Context, version 00; no `tracestate`).
 */
const sendTraceparent: TextMapPropagator = {
  inject(active: Context, carrier: unknown, setter: TextMapSetter) {
    const span = trace.getSpanContext(active);
    if (!span || !isSpanContextValid(span)) return;
    const flags = span.traceFlags & TraceFlags.SAMPLED ? '01' : '00';
    setter.set(carrier, 'traceparent', `00-${span.traceId}-${span.spanId}-${flags}`);
  },
  extract: (active: Context) => active,
  fields: () => ['traceparent'],
};

/** The package's version, for the `service.version` resource attribute. */
function serviceVersion(): string {
  const require = createRequire(import.meta.url);
  return (require('../package.json') as { version: string }).version;
}

/** Which of PATCHED_MODULES this process has loaded already (a CommonJS module imported by ESM is cached too). */
function loadedModules(): string[] {
  const require = createRequire(import.meta.url);
  return PATCHED_MODULES.filter((name) => require.cache[require.resolve(name)] !== undefined);
}

/**
 * Starts the SDK, once per process: a second call returns the running one (the first configuration wins) until
 * it is shut down.
 */
export function startTracing(config: TracingConfig): TracingSdk {
  if (current) return current;
  const unpatched = loadedModules();
  if (!loaderRegistered) {
    // Only these modules go through the hook; it stays for the life of the process (a loader cannot be removed).
    register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, {
      data: { include: [...PATCHED_MODULES] },
    });
    loaderRegistered = true;
  }
  const url = `${config.endpoint.replace(/\/+$/, '')}/v1/traces`;
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': SERVICE_NAME,
      'service.version': serviceVersion(),
      'host.name': hostname(),
      'process.pid': process.pid,
    }),
    // A trace's first span decides for the whole trace; messages were thinned before (tracing.ts messageSampled).
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sample_ratio) }),
    // JSON over HTTP; headers for the collector (authorization) from OTEL_EXPORTER_OTLP_HEADERS.
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }) })],
  });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(sendTraceparent);
  trace.setGlobalTracerProvider(provider);
  const unload = registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      // Commands inside a traced operation only: the health check's PING every second is not one.
      new IORedisInstrumentation({ requireParentSpan: true }),
      new GrpcInstrumentation(),
      new UndiciInstrumentation({ requireParentforSpans: true }),
    ],
  });
  setTracer(provider.getTracer(SERVICE_NAME, serviceVersion()), config.message_sample_ratio);
  const sdk: TracingSdk = {
    provider,
    url,
    unpatched,
    forceFlush: () => provider.forceFlush(),
    async shutdown() {
      if (current !== sdk) return;
      current = undefined;
      setTracer(undefined);
      unload();
      // A collector that is down or slow must not fail or hold up the hub's stop: what it refuses is lost.
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          diag.warn(`spans not exported at shutdown: no answer within ${SHUTDOWN_EXPORT_MS}ms`);
          resolve();
        }, SHUTDOWN_EXPORT_MS);
      });
      try {
        await Promise.race([provider.shutdown(), timedOut]);
      } catch (error) {
        diag.warn(
          `spans not exported at shutdown: ${error instanceof Error ? error.message : String(error)}`,
        );
      } finally {
        clearTimeout(timer);
        trace.disable();
        propagation.disable();
        context.disable();
      }
    },
  };
  current = sdk;
  return sdk;
}
