import type { FastifyOtelInstrumentation } from '@fastify/otel';
import { DiagLogLevel, diag } from '@opentelemetry/api';
import fp from 'fastify-plugin';
import { redactUrlCredentials } from '../src/access.ts';
import type { Config } from '../src/config/schema.ts';
import { LogThrottle } from '../src/log-throttle.ts';

declare module 'fastify' {
  interface FastifyInstance {
    tracing: {
      /** `tracing.endpoint` is set: spans are made and exported. */
      readonly enabled: boolean;
      /** Exports every span ended so far (tests; nothing to do when off). */
      flush(): Promise<void>;
    };
  }
}

/**
 * Routes without a span: the WebSocket upgrade (its reply is hijacked, so the span would never end; what happens on
 * a socket has spans of its own), and what probes, scrapers and the admin page call every few seconds.
 */
const UNTRACED = new Set(['/ws', '/health', '/ready', '/metrics', '/debug']);
const pathOf = (url: string) => url.split('?', 1)[0];

/** The SDK reports a failed export as the error serialized to JSON: its message is what a reader needs. */
function errorText(message: string): string {
  if (!message.startsWith('{')) return message;
  try {
    const parsed = JSON.parse(message) as { message?: unknown };
    return typeof parsed.message === 'string' ? parsed.message : message;
  } catch {
    return message;
  }
}

/**
 * OpenTelemetry (docs/tracing.md), off unless `tracing.endpoint` is set; then the SDK is started (unless
 * src/server.ts did already, before the app's modules loaded) and every HTTP request gets a span (@fastify/otel) that
 * parents what it does. Registered first, so that every route is seen; closed last, so the spans of the other
 * plugins' closing are exported too. Off, nothing of the SDK is imported.
 */
export default fp<{ config: Config['tracing'] }>(
  async (fastify, { config }) => {
    const { endpoint } = config;
    if (endpoint === undefined) {
      fastify.decorate('tracing', { enabled: false, flush: async () => {} });
      return;
    }
    const { startTracing } = await import('../src/tracing-sdk.ts');
    const { FastifyOtelInstrumentation: Instrumentation } = await import('@fastify/otel');
    const sdk = startTracing({ ...config, endpoint });

    // The SDK's own troubles (a collector that refuses or cannot be reached) reach the log, once per 10 s each.
    const throttle = new LogThrottle(10_000);
    const report = (message: string) => {
      const text = errorText(message);
      const suppressed = throttle.allow(text.slice(0, 80));
      if (suppressed !== undefined) fastify.log.warn({ suppressed }, `tracing: ${text}`);
    };
    const ignore = () => {};
    diag.setLogger(
      { error: report, warn: report, info: ignore, debug: ignore, verbose: ignore },
      DiagLogLevel.WARN,
    );
    fastify.log.info(
      {
        url: redactUrlCredentials(sdk.url),
        sample_ratio: config.sample_ratio,
        message_sample_ratio: config.message_sample_ratio,
      },
      'tracing: on',
    );
    if (sdk.unpatched.length > 0) {
      fastify.log.warn(
        { modules: sdk.unpatched },
        'tracing: these modules were loaded before the SDK started: no client spans for their calls (src/server.ts starts it first)',
      );
    }

    const otel: FastifyOtelInstrumentation = new Instrumentation({
      // A span per request and one for its handler; not one per hook (auth, rate limit, access: 5 to 8 more).
      instrumentHooks: false,
      ignorePaths: ({ url }) => UNTRACED.has(pathOf(url)),
      requestHook: (span, request) => {
        const route = request.routeOptions.url;
        span.updateName(route === undefined ? request.method : `${request.method} ${route}`);
        // The path alone: a query string may hold a token (`?token=`).
        span.setAttribute('url.path', pathOf(request.url));
      },
    });
    otel.setTracerProvider(sdk.provider);
    await fastify.register(otel.plugin());

    fastify.decorate('tracing', { enabled: true, flush: () => sdk.forceFlush() });
    fastify.addHook('onClose', async () => {
      otel.disable();
      await sdk.shutdown();
      diag.disable();
    });
  },
  { name: 'tracing' },
);
