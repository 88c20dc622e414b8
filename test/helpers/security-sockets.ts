/**
 * Raw TCP tools, for peers that misbehave as `ws` never would: a hand-made upgrade, masked frames, a WebSocket
 * spoken by hand.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

/**
 * A socket upgraded by hand to /ws, with nothing of `ws` on the client side: `read: false` leaves it paused, as a
 * peer that never reads (and so never answers the close handshake). Socket errors (the hub's reset) are ignored.
 */
export async function upgradedSocket(
  baseUrl: string,
  { read = true, query = 'type=tui' }: { read?: boolean; query?: string } = {},
): Promise<Socket> {
  const { hostname, port } = new URL(baseUrl);
  const socket = connect({ host: hostname, port: Number(port) });
  await once(socket, 'connect');
  socket.write(
    `GET /ws?${query} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const [head] = (await once(socket, 'data')) as [Buffer];
  if (!head.toString().startsWith('HTTP/1.1 101'))
    throw new Error(`upgrade refused: ${head.toString().split('\r\n')[0]}`);
  if (!read) socket.pause();
  socket.on('error', () => {});
  return socket;
}

/** One masked client frame (opcode 1 text, 9 ping…) of at most 125 bytes, as a browser would send it. */
export function maskedFrame(opcode: number, payload: Buffer): Buffer {
  if (payload.length > 125) throw new RangeError('a short frame carries at most 125 bytes');
  const mask = randomBytes(4);
  return Buffer.concat([
    Buffer.from([0x80 | opcode, 0x80 | payload.length]),
    mask,
    Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4])),
  ]);
}

/** One frame read off a raw TCP WebSocket (server frames are never masked). */
export interface Frame {
  opcode: number;
  payload: Buffer;
}

/**
 * A WebSocket spoken by hand over TCP, for a peer that misbehaves in ways `ws` never would: it keeps sending
 * after the server's close frame, and only closes when the test says so.
 */
export class TcpWebSocket {
  readonly frames: Frame[] = [];
  /** Resolves when the TCP connection has closed. */
  readonly ended: Promise<void>;
  private readonly socket: Socket;
  private buffer = Buffer.alloc(0);
  private readonly waiters = new Set<() => void>();

  private constructor(socket: Socket, rest: Buffer) {
    this.socket = socket;
    this.ended = once(socket, 'close').then(() => {});
    socket.on('data', (chunk: Buffer) => this.feed(chunk));
    socket.on('close', () => {
      for (const wake of [...this.waiters]) wake();
    });
    socket.on('error', () => {});
    this.feed(rest);
    socket.resume();
  }

  /** Connects and completes the handshake; rejects with the status line if the server refuses. */
  static async connect(
    baseUrl: string,
    query: string,
    headers: Record<string, string>,
  ): Promise<TcpWebSocket> {
    const { hostname, port } = new URL(baseUrl);
    const socket = connect({ host: hostname, port: Number(port) });
    await once(socket, 'connect');
    const lines = [
      `GET /ws?${query} HTTP/1.1`,
      `Host: ${hostname}:${port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    const rest = await new Promise<Buffer>((resolve, reject) => {
      let received = Buffer.alloc(0);
      const onClose = () => reject(new Error('connection closed during the handshake'));
      const onData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        const end = received.indexOf('\r\n\r\n');
        if (end === -1) return;
        socket.pause();
        socket.off('data', onData);
        socket.off('close', onClose);
        const head = received.subarray(0, end).toString();
        if (!head.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
          return;
        }
        resolve(received.subarray(end + 4));
      };
      socket.on('data', onData);
      socket.once('close', onClose);
    });
    return new TcpWebSocket(socket, rest);
  }

  /** Sends one masked frame (opcode 1 text, 2 binary, 8 close). */
  sendFrame(opcode: number, payload: Buffer | string): void {
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const mask = randomBytes(4);
    let header: Buffer;
    if (data.length < 126) header = Buffer.from([0x80 | opcode, 0x80 | data.length]);
    else if (data.length < 65536) {
      header = Buffer.alloc(4);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(data.length, 2);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x80 | opcode;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(data.length), 2);
    }
    const masked = Buffer.from(data.map((byte, i) => byte ^ mask[i % 4]));
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  sendText(message: unknown): void {
    this.sendFrame(1, JSON.stringify(message));
  }

  /** Sends a close frame with `code`. */
  sendClose(code = 1000): void {
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(code);
    this.sendFrame(8, payload);
  }

  /** Resolves with the first frame of `opcode` (e.g. 8 for close); rejects if the connection ends first. */
  nextFrame(opcode: number, timeoutMs = 5000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const frame = this.frames.find((f) => f.opcode === opcode);
        if (frame) {
          finish();
          resolve(frame);
          return true;
        }
        if (this.socket.destroyed) {
          finish();
          reject(new Error(`connection closed before a frame with opcode ${opcode}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no frame with opcode ${opcode} within ${timeoutMs}ms`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      if (!check()) this.waiters.add(check);
    });
  }

  destroy(): void {
    this.socket.destroy();
  }

  private feed(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) break;
      const opcode = this.buffer[0] & 0x0f;
      let length = this.buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (this.buffer.length < 4) break;
        length = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (this.buffer.length < 10) break;
        length = Number(this.buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (this.buffer.length < offset + length) break;
      this.frames.push({ opcode, payload: this.buffer.subarray(offset, offset + length) });
      this.buffer = this.buffer.subarray(offset + length);
    }
    for (const wake of [...this.waiters]) wake();
  }
}
