import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';

/**
 * A real node:http server on 127.0.0.1 (free port) standing in for account-monitor or strategy-engine.
 * Each path answers through a handler the test sets (and may change at any time); every request is recorded.
 */

export interface HttpRequestRecord {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Resolves when the client goes away before an answer was sent (abort, timeout). */
  aborted: Promise<void>;
}

/** What a handler returns: a JSON body (status 200), a full answer, or a promise of either. */
export type HttpAnswer = { status?: number; body?: unknown; raw?: string; headers?: Record<string, string> };
export type HttpHandler = (request: HttpRequestRecord) => HttpAnswer | Promise<HttpAnswer>;

/** JSON with status 200. */
export const json =
  (body: unknown, status = 200): HttpHandler =>
  () => ({ status, body });

/** A handler that never answers: the request stays open until the client gives up or the server closes. */
export const hangHttp: HttpHandler = () => new Promise(() => {});

export class HttpBackend {
  readonly server: Server;
  readonly requests: HttpRequestRecord[] = [];
  routes: Record<string, HttpHandler>;
  private readonly waiters: { path: string | undefined; resolve: (request: HttpRequestRecord) => void }[] =
    [];

  private constructor(routes: Record<string, HttpHandler>) {
    this.routes = routes;
    this.server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      const record: HttpRequestRecord = {
        method: request.method ?? 'GET',
        path,
        headers: request.headers,
        aborted: new Promise((resolve) =>
          response.once('close', () => {
            if (!response.writableFinished) resolve();
          }),
        ),
      };
      this.requests.push(record);
      for (const waiter of [...this.waiters]) {
        if (waiter.path !== undefined && waiter.path !== path) continue;
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve(record);
      }
      const handler = this.routes[path];
      if (!handler) {
        send(response, { status: 404, body: { error: 'not found' } });
        return;
      }
      Promise.resolve()
        .then(() => handler(record))
        .then(
          (answer) => send(response, answer),
          (error: unknown) => send(response, { status: 500, body: { error: String(error) } }),
        );
    });
  }

  static async start(routes: Record<string, HttpHandler> = {}): Promise<HttpBackend> {
    const backend = new HttpBackend(routes);
    backend.server.listen(0, '127.0.0.1');
    await once(backend.server, 'listening');
    return backend;
  }

  /** `http://127.0.0.1:PORT`, as backend_services.<name>.url wants it. */
  get url(): string {
    const { port } = this.server.address() as { port: number };
    return `http://127.0.0.1:${port}`;
  }

  /** How many requests for `path` (for any path when omitted) reached the server so far. */
  hits(path?: string): number {
    return path === undefined ? this.requests.length : this.requests.filter((r) => r.path === path).length;
  }

  /** Resolves with the next request for `path` (for any path when omitted) that reaches the server. */
  nextRequest(path?: string, timeoutMs = 5000): Promise<HttpRequestRecord> {
    return new Promise((resolve, reject) => {
      const waiter = {
        path,
        resolve: (request: HttpRequestRecord) => {
          clearTimeout(timer);
          resolve(request);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no request for ${path ?? 'any path'} reached the server within ${timeoutMs}ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Drops every open connection (hanging requests included) and stops listening. */
  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }
}

function send(response: ServerResponse, answer: HttpAnswer): void {
  if (response.destroyed) return;
  const text = answer.raw ?? JSON.stringify(answer.body ?? null);
  response.writeHead(answer.status ?? 200, { 'content-type': 'application/json', ...answer.headers });
  response.end(text);
}

/** A GET /api/account answer of account-monitor, decimals as strings the way it sends them. */
export function accountBody(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    pnl: { realized_pnl: '12.5', unrealized_pnl: '-3.25' },
    balances: {
      USDT: { asset: 'USDT', free: '900.5', locked: '100', total: '1000.5', usd_value: '1000.5' },
      BTC: { asset: 'BTC', free: '0.5', locked: '0', total: '0.5', usd_value: '25000' },
    },
    positions: {
      BTCUSDT: {
        symbol: 'BTCUSDT',
        quantity: '-0.25',
        entry_price: '50000',
        current_price: '49000',
        realized_pnl: '0',
        unrealized_pnl: '250',
        total_fees: '1.5',
        last_update: '2024-01-01T00:00:00Z',
      },
      ethusdt: { quantity: '2', entry_price: '3000', current_price: '3100', unrealized_pnl: '200' },
      SOLUSDT: { symbol: 'SOLUSDT', quantity: '0', entry_price: '100' },
    },
    timestamp: '2024-01-01T00:00:00Z',
    ...fields,
  };
}

/** The two answers strategy-engine gives: GET /status and GET /api/service-info. */
export function strategyRoutes(
  mode: unknown = 'live',
  strategies: Record<string, Record<string, unknown>> = {
    momentum: { status: 'running', pnl: 12.5, trades: 3, win_rate: 0.66, last_signal: null },
    mean_revert: { status: 'paused', pnl: -1.25, trades: 1, win_rate: 0 },
  },
): Record<string, HttpHandler> {
  return {
    '/status': json({ mode, active_strategies: Object.keys(strategies).length, signal_queue_size: 0 }),
    '/api/service-info': json({ strategies }),
  };
}
