/** Clients of /ws for the tests: the project's client module, and a recording `ws` socket for raw frames. */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import { type ClientOptions, DashboardClient, type JsonObject } from '../../src/client.ts';
import { decode } from '../../src/codec.ts';

/** Connects the project's client module and waits for the socket to open. */
export async function connectClient(url: string, options: ClientOptions = {}): Promise<DashboardClient> {
  const client = new DashboardClient(url, options);
  await client.connected();
  return client;
}

/** Resolves when an update leaves the client's view satisfying `predicate` (checked at once, too). */
export function viewWhere(
  client: DashboardClient,
  predicate: (data: JsonObject) => boolean,
  timeoutMs = 5000,
): Promise<JsonObject> {
  if (client.view.sequence !== undefined && predicate(client.view.data))
    return Promise.resolve(client.view.data);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(
        new Error(
          `view did not reach the expected state in ${timeoutMs}ms: ${JSON.stringify(client.view.data)}`,
        ),
      );
    }, timeoutMs);
    const off = client.on('update', () => {
      if (!predicate(client.view.data)) return;
      clearTimeout(timer);
      off();
      resolve(client.view.data);
    });
  });
}

export type Message = Record<string, unknown>;

/** A `ws` socket whose every message and close is recorded from the start, so no event can be missed. */
export class WatchedSocket {
  readonly ws: WebSocket;
  readonly messages: Message[] = [];
  /** Resolves once the socket is open; rejects if the handshake fails. */
  readonly opened: Promise<void>;
  /** Resolves when the socket has closed, with the code and reason the client saw. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly waiters = new Set<() => void>();

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, binary: boolean) => {
      this.messages.push(decode(data, binary) as Message);
      for (const wake of [...this.waiters]) wake();
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code: number, reason: Buffer) => {
        resolve({ code, reason: reason.toString() });
        for (const wake of [...this.waiters]) wake();
      });
    });
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    // A later error (e.g. a reset after a close frame) is visible in `closed`; it must not crash the test.
    ws.on('error', () => {});
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' || Buffer.isBuffer(message) ? message : JSON.stringify(message));
  }

  /**
   * Resolves with the first message at index `from` or later that satisfies `predicate`; rejects if the
   * socket closes first or nothing comes within `timeoutMs`.
   */
  next(predicate: (message: Message) => boolean = () => true, from = this.messages.length, timeoutMs = 5000) {
    return new Promise<Message>((resolve, reject) => {
      let index = from;
      const check = (): boolean => {
        for (; index < this.messages.length; index++) {
          if (predicate(this.messages[index])) {
            finish();
            resolve(this.messages[index]);
            return true;
          }
        }
        if (this.ws.readyState === WebSocket.CLOSED) {
          finish();
          reject(
            new Error(`socket closed before the expected message; got ${JSON.stringify(this.messages)}`),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no expected message within ${timeoutMs}ms; got ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      const wake = () => {
        check();
      };
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      if (!check()) this.waiters.add(wake);
    });
  }

  /** Resolves with the message at index `from` (by default the next one to arrive), whatever it is. */
  nextMessage(from = this.messages.length, timeoutMs = 5000): Promise<Message> {
    return this.next(() => true, from, timeoutMs);
  }

  /** Sends a message and resolves with the first reply of one of `types` after it. */
  request(message: unknown, ...types: string[]): Promise<Message> {
    const from = this.messages.length;
    this.send(message);
    return this.next((m) => types.includes(m.type as string), from);
  }

  /** The subscription set as the server holds it: an empty subscribe replies with the whole set. */
  async subscriptions(): Promise<string[]> {
    const reply = await this.request({ action: 'subscribe', subscriptions: [] }, 'subscribed', 'error');
    if (reply.type !== 'subscribed') throw new Error(`read-back refused: ${JSON.stringify(reply)}`);
    return [...(reply.subscriptions as string[])].sort();
  }

  /** Closes from the client side and waits for the close to complete. */
  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}

export interface UpgradeOptions {
  /** Query string after `/ws?` (the token query parameter is added by `via: 'query'`). */
  query?: string;
  token?: string;
  /** Where the token travels; `header` by default. */
  via?: 'header' | 'subprotocol' | 'query';
  headers?: Record<string, string>;
  /** The Origin header, as a browser sends it. */
  origin?: string;
  /** Subprotocols to offer (beyond the `bearer, <jwt>` pair of `via: 'subprotocol'`). */
  protocols?: string[];
  /** Any other `ws` client option (e.g. `autoPong: false` for a peer that never answers pings). */
  clientOptions?: WebSocket.ClientOptions;
}

export type UpgradeResult =
  | { opened: true; socket: WatchedSocket }
  | { opened: false; status: number; body: Message; headers: IncomingHttpHeaders };

/** The `ws://` URL of /ws with a query. */
export function wsUrl(baseUrl: string, query: string): string {
  return `${baseUrl.replace(/^http/, 'ws')}/ws?${query}`;
}

/**
 * Tries an upgrade: resolves with the open socket, or with the HTTP refusal (status, parsed JSON body, headers)
 * when the server answered anything but 101.
 */
export function tryUpgrade(baseUrl: string, options: UpgradeOptions = {}): Promise<UpgradeResult> {
  const { token, via = 'header', origin } = options;
  let query = options.query ?? 'type=web&format=json';
  const headers: Record<string, string> = { ...options.headers };
  const protocols = [...(options.protocols ?? [])];
  if (token !== undefined) {
    if (via === 'header') headers.Authorization = `Bearer ${token}`;
    else if (via === 'subprotocol') protocols.push('bearer', token);
    else query += `&token=${encodeURIComponent(token)}`;
  }
  const ws = new WebSocket(wsUrl(baseUrl, query), protocols, {
    ...options.clientOptions,
    headers,
    ...(origin !== undefined ? { origin } : {}),
  });
  const socket = new WatchedSocket(ws);
  return new Promise((resolve, reject) => {
    socket.opened.then(() => resolve({ opened: true, socket }), reject);
    ws.once('unexpected-response', (_request, response: IncomingMessage) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('end', () => {
        ws.terminate();
        const text = Buffer.concat(chunks).toString();
        let body: Message;
        try {
          body = JSON.parse(text) as Message;
        } catch {
          body = { raw: text };
        }
        resolve({ opened: false, status: response.statusCode!, body, headers: response.headers });
      });
    });
    // After a refusal ws reports the aborted handshake as an error: expected, and already answered.
    socket.opened.catch(() => {});
  });
}

/** An upgrade that must succeed; fails the test with the refusal otherwise. */
export async function openSocket(baseUrl: string, options: UpgradeOptions = {}): Promise<WatchedSocket> {
  const result = await tryUpgrade(baseUrl, options);
  if (!result.opened)
    throw new Error(`upgrade refused with ${result.status}: ${JSON.stringify(result.body)}`);
  return result.socket;
}

/** An upgrade that must be refused; fails the test if a socket opens. */
export async function refusedUpgrade(
  baseUrl: string,
  options: UpgradeOptions = {},
): Promise<{ status: number; body: Message; headers: IncomingHttpHeaders }> {
  const result = await tryUpgrade(baseUrl, options);
  if (result.opened) {
    await result.socket.close();
    throw new Error('the upgrade was expected to be refused, but a socket opened');
  }
  return result;
}
