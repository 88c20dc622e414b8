import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { context, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { ConfigError } from '../../src/config/errors.ts';
import { configFromDocument } from '../../src/config/load.ts';
import { messageSampled, setTracer, tracing, withSpan } from '../../src/tracing.ts';

/**
 * src/tracing.ts alone: with no tracer (tracing off) `withSpan` only runs its function; with one, a span that ends
 * when the function returns or settles, fails with it, parents what runs inside, and starts a trace of its own
 * when asked. Messages are given a span at `message_sample_ratio`.
 */

const exporter = new InMemorySpanExporter();

function tracingOn(messageSampleRatio = 0): void {
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  setTracer(provider.getTracer('test'), messageSampleRatio);
}

afterEach(() => {
  setTracer(undefined);
  context.disable();
  exporter.reset();
});

describe('tracing off', () => {
  test('withSpan runs the function without a span, its result and its error unchanged', async () => {
    assert.equal(tracing(), false);
    assert.equal(
      withSpan('x', {}, (span) => span),
      undefined,
    );
    assert.equal(await withSpan('x', {}, async () => 7), 7);
    assert.throws(() => withSpan('x', {}, () => assert.fail('boom')), /boom/);
    assert.equal(messageSampled(), false);
  });
});

describe('tracing on', () => {
  test('a span ends with a synchronous function, and a throw marks it failed', () => {
    tracingOn();
    assert.equal(
      withSpan('sync', { a: 1 }, (span) => span?.isRecording()),
      true,
    );
    assert.throws(() =>
      withSpan('throws', {}, () => {
        throw new Error('bad payload');
      }),
    );
    const [ok, failed] = exporter.getFinishedSpans();
    assert.equal(ok.name, 'sync');
    assert.equal(ok.attributes.a, 1);
    assert.equal(ok.status.code, SpanStatusCode.UNSET);
    assert.equal(failed.status.code, SpanStatusCode.ERROR);
    assert.equal(failed.status.message, 'bad payload');
  });

  test('a span ends when the promise settles; a rejection marks it failed and passes through', async () => {
    tracingOn();
    const pending = withSpan('async', {}, async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return 'done';
    });
    assert.equal(exporter.getFinishedSpans().length, 0, 'not ended before it settles');
    assert.equal(await pending, 'done');
    await assert.rejects(
      withSpan('rejects', {}, async () => {
        throw new Error('unavailable');
      }),
      /unavailable/,
    );
    const [ok, failed] = exporter.getFinishedSpans();
    assert.equal(ok.name, 'async');
    assert.equal(failed.status.message, 'unavailable');
  });

  test('a span parents the spans started inside it, across awaits; `root` starts a new trace', async () => {
    tracingOn();
    await withSpan('outer', {}, async () => {
      await new Promise((resolve) => setImmediate(resolve));
      withSpan('inner', {}, () => {});
      withSpan('own trace', {}, () => {}, { root: true });
    });
    const spans = Object.fromEntries(exporter.getFinishedSpans().map((span) => [span.name, span]));
    const outer = spans.outer.spanContext();
    assert.equal(spans.inner.parentSpanContext?.spanId, outer.spanId);
    assert.equal(spans.inner.spanContext().traceId, outer.traceId);
    assert.equal(spans['own trace'].parentSpanContext, undefined);
    assert.notEqual(spans['own trace'].spanContext().traceId, outer.traceId);
    assert.equal(trace.getActiveSpan(), undefined, 'nothing stays active after');
  });

  test('one message in 1/message_sample_ratio is given a span', () => {
    const share = (ratio: number) => {
      tracingOn(ratio);
      return Array.from({ length: 4000 }, messageSampled).filter(Boolean).length / 4000;
    };
    assert.equal(share(0), 0);
    assert.equal(share(1), 1);
    const quarter = share(0.25);
    assert.ok(quarter > 0.2 && quarter < 0.3, `${quarter}`);
  });
});

describe('the tracing config', () => {
  const load = (tracing: Record<string, unknown>) =>
    configFromDocument({ auth: { enabled: false }, tracing }).tracing;

  test('off by default: no endpoint, every trace sampled, one message in a hundred', () => {
    assert.deepEqual(load({}), { sample_ratio: 1, message_sample_ratio: 0.01 });
  });

  test('the endpoint is a collector base URL: /v1/traces is appended, so a URL with it is refused', () => {
    assert.equal(
      load({ endpoint: 'https://collector.example:4318' }).endpoint,
      'https://collector.example:4318',
    );
    for (const endpoint of [
      'http://collector:4318/v1/traces',
      'http://collector:4318/v1/traces/',
      'grpc://collector:4317',
    ]) {
      assert.throws(
        () => load({ endpoint }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, /tracing\.endpoint must be the collector's base URL/);
          return true;
        },
      );
    }
  });

  test('the ratios are from 0 to 1', () => {
    assert.throws(() => load({ sample_ratio: 1.5 }), /tracing\.sample_ratio must be a number from 0 to 1/);
    assert.throws(() => load({ message_sample_ratio: -0.1 }), /tracing\.message_sample_ratio/);
  });
});
