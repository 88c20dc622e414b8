/**
 * A small client for the /ws protocol (docs/protocol.md): connects, subscribes, applies snapshots and merge
 * patches, checks `base_sequence` and resyncs on a gap. Uses the standard WebSocket API, so it runs in Node 22+
 * and in browsers alike.
 */
import { decode, encode, type Format } from './codec.ts';
import { applyMergePatch, type Json, type JsonObject } from './merge-patch.ts';

export interface StateUpdate {
  type: 'state_update';
  sequence: number;
  epoch: string;
  timestamp: string;
  data: JsonObject;
}
export interface DiffUpdate {
  type: 'diff_update';
  sequence: number;
  base_sequence: number;
  timestamp: string;
  changes: JsonObject;
}
export type ServerMessage =
  | StateUpdate
  | DiffUpdate
  | { type: 'subscribed' | 'unsubscribed'; subscriptions: string[]; sequence: number }
  | { type: 'pong'; timestamp: string }
  | { type: 'authenticated'; user_id: string; expires_at: string | null }
  | { type: 'error'; code: string; message: string };

/** A client's copy of its view of the state, kept current from snapshots and diffs. */
export class ClientView {
  data: JsonObject = {};
  sequence: number | undefined;
  epoch: string | undefined;

  /**
   * Applies a `state_update` or `diff_update`. Returns false for a diff that does not start at this view's
   * sequence (a gap): the view is left as it was, and the caller should resync.
   */
  apply(message: StateUpdate | DiffUpdate): boolean {
    if (message.type === 'state_update') {
      this.data = message.data;
      this.sequence = message.sequence;
      this.epoch = message.epoch;
      return true;
    }
    if (message.base_sequence !== this.sequence) return false;
    this.data = applyMergePatch(this.data, message.changes) as JsonObject;
    this.sequence = message.sequence;
    return true;
  }
}

export interface ClientOptions {
  type?: 'web' | 'tui';
  format?: Format;
  /** A JWT: sent as the `bearer, <jwt>` subprotocol pair, the way a browser can. */
  token?: string;
  /** WebSocket subprotocols to offer (instead of `token`). */
  protocols?: string | string[];
  /** A WebSocket implementation; the global one by default. */
  WebSocket?: typeof WebSocket;
}

type Listener = (message: ServerMessage) => void;

/** A connection to the hub. `on('update')` fires after the view changed; `on('message')` for every message. */
export class DashboardClient {
  readonly view = new ClientView();
  /** How many times a gap made this client resync. */
  resyncs = 0;
  private readonly socket: WebSocket;
  private readonly format: Format;
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly opened: Promise<void>;

  constructor(
    baseUrl: string,
    { type = 'web', format = 'json', token, protocols, WebSocket: Ctor }: ClientOptions = {},
  ) {
    const url = new URL('/ws', baseUrl.replace(/^http/, 'ws'));
    url.searchParams.set('type', type);
    url.searchParams.set('format', format);
    this.format = format;
    const Impl = Ctor ?? globalThis.WebSocket;
    this.socket = new Impl(url, token ? ['bearer', token] : protocols);
    this.socket.binaryType = 'arraybuffer';
    this.opened = new Promise((resolve, reject) => {
      this.socket.addEventListener('open', () => resolve(), { once: true });
      this.socket.addEventListener('error', () => reject(new Error(`cannot connect to ${url.origin}`)), {
        once: true,
      });
    });
    this.socket.addEventListener('message', (event) => this.receive(event.data));
  }

  /** Resolves once the socket is open. */
  connected(): Promise<void> {
    return this.opened;
  }

  on(event: 'message' | 'update' | ServerMessage['type'], listener: Listener): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Resolves with the next message of `type` that satisfies `predicate`. */
  next<T extends ServerMessage['type']>(
    type: T,
    predicate: (message: Extract<ServerMessage, { type: T }>) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no ${type} message within ${timeoutMs}ms`));
      }, timeoutMs);
      const off = this.on(type, (message) => {
        if (!predicate(message as Extract<ServerMessage, { type: T }>)) return;
        clearTimeout(timer);
        off();
        resolve(message as Extract<ServerMessage, { type: T }>);
      });
    });
  }

  send(message: object): void {
    // Text frames for JSON, binary frames for MessagePack; the hub accepts both on a msgpack connection.
    const frame = encode(this.format, message);
    this.socket.send(this.format === 'json' ? frame.toString('utf8') : frame);
  }

  async subscribe(subscriptions: string[]): Promise<StateUpdate> {
    const snapshot = this.next('state_update');
    this.send({ action: 'subscribe', subscriptions });
    return snapshot;
  }

  async unsubscribe(subscriptions: string[]): Promise<{ subscriptions: string[] }> {
    const reply = this.next('unsubscribed');
    this.send({ action: 'unsubscribe', subscriptions });
    return reply;
  }

  resync(): void {
    this.send({ action: 'resync' });
  }

  /** Sends a fresh token before the current one expires; resolves with the server's `authenticated` reply. */
  async refreshToken(token: string): Promise<ServerMessage> {
    const reply = Promise.race([this.next('authenticated'), this.next('error')]);
    this.send({ action: 'auth', token });
    return reply;
  }

  close(code?: number): void {
    this.socket.close(code);
  }

  /** Resolves when the socket has closed, with the close code and reason. */
  closed(): Promise<{ code: number; reason: string }> {
    if (this.socket.readyState === 3) return Promise.resolve({ code: 1006, reason: '' });
    return new Promise((resolve) => {
      this.socket.addEventListener('close', (event) => resolve({ code: event.code, reason: event.reason }), {
        once: true,
      });
    });
  }

  private receive(data: string | ArrayBuffer): void {
    const message = decode(data, typeof data !== 'string') as ServerMessage;
    if (message.type === 'state_update' || message.type === 'diff_update') {
      if (this.view.apply(message)) {
        this.emit('update', message);
      } else {
        this.resyncs++;
        this.resync();
      }
    }
    this.emit(message.type, message);
    this.emit('message', message);
  }

  private emit(event: string, message: ServerMessage): void {
    for (const listener of this.listeners.get(event) ?? []) listener(message);
  }
}

export type { Json, JsonObject };
