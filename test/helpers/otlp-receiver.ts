import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as an OTLP/HTTP JSON export carries it, its attributes flattened. */
export interface ReceivedSpan {
  name: string;
  traceId: string;
  spanId: string;
  /** Absent (or empty) for the first span of a trace. */
  parentSpanId?: string;
  /** 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  attributes: Record<string, string | number | boolean>;
  /** 0 unset, 1 ok, 2 error. */
  status: { code?: number; message?: string };
  /** The resource's attributes (service.name …). */
  resource: Record<string, string | number | boolean>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: {
      spans?: (Omit<ReceivedSpan, 'attributes' | 'resource'> & { attributes?: OtlpAttribute[] })[];
    }[];
  }[];
}

function flatten(attributes: OtlpAttribute[] = []): Record<string, string | number | boolean> {
  const flat: Record<string, string | number | boolean> = {};
  for (const { key, value } of attributes) {
    flat[key] =
      value.stringValue ??
      (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
      value.doubleValue ??
      value.boolValue ??
      '';
  }
  return flat;
}

/**
 * A collector for the tests: a plain HTTP server taking OTLP/HTTP JSON exports on POST /v1/traces (what
 * @opentelemetry/exporter-trace-otlp-http sends), keeping every span, answering 200 as a collector does.
 */
export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Each export's path and content type, in order. */
  readonly requests: { path: string; contentType: string | undefined }[] = [];
  private readonly server: Server;
  private readonly waiters = new Set<() => void>();

  private constructor(server: Server) {
    this.server = server;
  }

  /** `status`: what every export is answered (a collector that refuses: 400). */
  static async start(status = 200): Promise<OtlpReceiver> {
    const server = createServer();
    const receiver = new OtlpReceiver(server);
    server.on('request', (request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        receiver.requests.push({ path: request.url ?? '', contentType: request.headers['content-type'] });
        if (request.method !== 'POST' || request.url !== '/v1/traces') {
          response.writeHead(404).end();
          return;
        }
        receiver.take(JSON.parse(Buffer.concat(chunks).toString()) as OtlpExport);
        response.writeHead(status, { 'content-type': 'application/json' }).end('{}');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return receiver;
  }

  /** `http://127.0.0.1:PORT`: the base URL, as `tracing.endpoint` takes it. */
  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The first span received (already, or later) that satisfies `predicate`; rejects after `timeoutMs`. */
  span(predicate: (span: ReceivedSpan) => boolean, timeoutMs = 5000): Promise<ReceivedSpan> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.spans.find(predicate);
        if (!found) return false;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(found);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no such span within ${timeoutMs}ms; received: ${this.spans.map((s) => s.name)}`));
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }

  /** The spans whose parent is `parent`. */
  children(parent: ReceivedSpan): ReceivedSpan[] {
    return this.spans.filter(
      (span) => span.traceId === parent.traceId && span.parentSpanId === parent.spanId,
    );
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }

  private take(body: OtlpExport): void {
    for (const { resource, scopeSpans = [] } of body.resourceSpans ?? []) {
      for (const { spans = [] } of scopeSpans) {
        for (const span of spans) {
          this.spans.push({
            ...span,
            attributes: flatten(span.attributes),
            resource: flatten(resource?.attributes),
          });
        }
      }
    }
    for (const wake of [...this.waiters]) wake();
  }
}
