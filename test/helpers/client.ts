import { once } from 'node:events';
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

/** A raw `ws` socket to /ws, for sending what the client module never would. */
export async function rawSocket(
  url: string,
  query = 'type=web&format=json',
  options: WebSocket.ClientOptions = {},
) {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/ws?${query}`, options);
  const messages: unknown[] = [];
  const waiters: (() => void)[] = [];
  socket.on('message', (data: Buffer, binary: boolean) => {
    messages.push(decode(data, binary));
    for (const wake of waiters.splice(0)) wake();
  });
  await once(socket, 'open');
  return {
    socket,
    messages,
    /** Resolves with the next message received after this call (or already queued past `from`). */
    async nextMessage(from = messages.length, timeoutMs = 5000): Promise<Record<string, unknown>> {
      const deadline = AbortSignal.timeout(timeoutMs);
      while (messages.length <= from) {
        await new Promise<void>((resolve, reject) => {
          waiters.push(resolve);
          deadline.addEventListener('abort', () => reject(new Error('no message in time')), { once: true });
        });
      }
      return messages[from] as Record<string, unknown>;
    },
  };
}
