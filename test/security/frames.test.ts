import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import type { Redis } from 'ioredis';
import { type RunningApp, startApp, waitReady } from '../helpers/app.ts';
import { connectClient, openSocket, viewWhere } from '../helpers/client.ts';
import { logCollector } from '../helpers/logs.ts';
import { TestRedis } from '../helpers/redis.ts';

/** Frames `ws` refuses end that connection only: the right close code, one log line per second, a counter. */

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;
const log = logCollector();

before(async () => {
  redis = await TestRedis.start();
  publisher = redis.client();
  running = await startApp(
    redis.url,
    {
      server: { log_level: 'warn' },
      websocket: { max_message_size: '1KiB', connect_rate_limit: { max: 1000, window: '1m' } },
      broadcast: { tui_interval: '20ms' },
    },
    { logStream: log.stream },
  );
  await waitReady(running.app);
});
after(async () => {
  publisher.disconnect();
  await running.close();
  await redis.kill();
});

/** A masked client frame with opcode 0x3 (reserved): a protocol error for the server. */
function reservedOpcodeFrame(): Buffer {
  return Buffer.from([0x83, 0x80, 1, 2, 3, 4]);
}

test('oversized and malformed frames close that socket only, are counted and logged once per second', async () => {
  const bystander = await connectClient(running.url, { type: 'tui' });
  await bystander.subscribe(['market_data']);
  const { socketErrors } = running.app.hub.stats;
  const clientsBefore = running.app.hub.clients.size;

  // Over websocket.max_message_size: 1009, five times within a second.
  for (let i = 0; i < 5; i++) {
    const { ws: socket } = await openSocket(running.url, { query: 'type=web&format=json' });
    const closed = once(socket, 'close');
    socket.send('x'.repeat(2048));
    const [code] = (await closed) as [number];
    assert.equal(code, 1009);
  }

  // A reserved opcode on a hand-made upgrade: `ws` answers 1002 and the hub lets the socket go.
  const port = Number(new URL(running.url).port);
  const tcp = connect(port, '127.0.0.1');
  await once(tcp, 'connect');
  tcp.write(
    'GET /ws?type=web HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  );
  await once(tcp, 'data'); // 101 Switching Protocols
  const received: Buffer[] = [];
  tcp.on('data', (chunk: Buffer) => received.push(chunk));
  tcp.write(reservedOpcodeFrame());
  await once(tcp, 'close');
  const reply = Buffer.concat(received);
  assert.equal(reply[0], 0x88, 'a close frame');
  assert.equal(reply.readUInt16BE(2), 1002);

  assert.equal(socketErrors.WS_ERR_UNSUPPORTED_MESSAGE_LENGTH, 5);
  assert.equal(socketErrors.WS_ERR_INVALID_OPCODE, 1);
  assert.equal(running.app.hub.clients.size, clientsBefore);

  const lines = log.lines().filter((line) => line.msg === 'websocket error; connection closed');
  const oversized = lines.filter((line) => line.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
  assert.ok(
    oversized.length >= 1 && oversized.length < 5,
    `${oversized.length} lines for 5 errors in a second`,
  );
  assert.equal(lines.filter((line) => line.code === 'WS_ERR_INVALID_OPCODE').length, 1);

  // The bystander still gets updates.
  await publisher.publish('market_data:FRAMES', JSON.stringify({ last_price: 42 }));
  await viewWhere(
    bystander,
    (data) => (data.market_data as Record<string, { last_price: number }>)?.FRAMES?.last_price === 42,
  );
  bystander.close();
});
