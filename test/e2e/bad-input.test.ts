import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import WebSocket from 'ws';
import type { JsonObject } from '../../src/client.ts';
import { encode } from '../../src/codec.ts';
import { type RunningApp, startStack, stopStack } from '../helpers/app.ts';
import { connectClient, openSocket, viewWhere } from '../helpers/client.ts';
import type { TestRedis } from '../helpers/redis.ts';

let redis: TestRedis;
let publisher: Redis;
let running: RunningApp;

before(async () => {
  ({ redis, publisher, running } = await startStack({
    websocket: { max_message_size: '4KiB' },
    ingest: { max_message_size: '8KiB' },
  }));
});
after(() => stopStack({ redis, publisher, running }));

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${running.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('bad Redis payloads', () => {
  test('are dropped and counted, never applied, and good ones still flow', async () => {
    const client = await connectClient(running.url, { type: 'tui' });
    await client.subscribe(['market_data', 'orders', 'positions']);
    const sequence = running.app.state.sequence;
    const bad: [string, string][] = [
      ['market_data:BTCUSDT', 'not json at all'],
      ['market_data:BTCUSDT', JSON.stringify({ last_price: 'twelve' })],
      ['market_data:BTCUSDT', JSON.stringify([1, 2, 3])],
      ['market_data:BTCUSDT', 'null'],
      ['orders:x', JSON.stringify({ symbol: 'BTCUSDT', state: 'NEW' })],
      ['positions:x', JSON.stringify({ quantity: 1 })],
      ['orderbook:BTCUSDT', JSON.stringify({ bids: { abc: 1 }, asks: {} })],
      ['market_data:BTCUSDT', JSON.stringify({ last_price: 1, pad: 'x'.repeat(9000) })],
    ];
    for (const [channel, payload] of bad) await publisher.publish(channel, payload);
    await publisher.publish('market_data:BTCUSDT', JSON.stringify({ last_price: 64000 }));
    await viewWhere(client, (d) => (d.market_data as JsonObject).BTCUSDT !== undefined);
    // Only the one good message was applied.
    assert.equal(running.app.state.sequence, sequence + 1);
    assert.deepEqual(client.view.data.orders, {});
    assert.deepEqual(client.view.data.positions, {});
    assert.equal(await metric('dashboard_ingest_invalid_total', 'source="redis",topic="market_data"'), 5);
    assert.equal(await metric('dashboard_ingest_invalid_total', 'source="redis",topic="orders"'), 1);
    assert.equal(await metric('dashboard_ingest_invalid_total', 'source="redis",topic="positions"'), 1);
    assert.equal(await metric('dashboard_ingest_invalid_total', 'source="redis",topic="orderbook"'), 1);
    assert.ok((await metric('dashboard_ingest_messages_total', 'source="redis",topic="market_data"')) >= 1);
    const debug = (await (await fetch(`${running.url}/debug`)).json()) as {
      ingest: { invalid: { redis: JsonObject } };
    };
    assert.equal(debug.ingest.invalid.redis.market_data, 5);
    client.close();
  });
});

describe('bad client messages', () => {
  test('get an error with a code; the connection and its subscriptions stay', async () => {
    const raw = await openSocket(running.url, { query: 'type=tui&format=json' });
    raw.ws.send(JSON.stringify({ action: 'subscribe', subscriptions: ['account'] }));
    assert.equal((await raw.nextMessage(0)).type, 'subscribed');
    assert.equal((await raw.nextMessage(1)).type, 'state_update');
    const cases: [string | Buffer, string][] = [
      ['{not json', 'invalid_message'],
      [JSON.stringify({ action: 'dance' }), 'unknown_action'],
      [JSON.stringify({ action: 'subscribe', subscriptions: ['nope'] }), 'unknown_topic'],
      [JSON.stringify({ action: 'subscribe', subscriptions: ['orders:BTCUSDT'] }), 'unknown_topic'],
      [JSON.stringify({ action: 'subscribe', subscriptions: 'account' }), 'invalid_message'],
      [JSON.stringify({ action: 'subscribe', subscriptions: [1, 2] }), 'invalid_message'],
      [JSON.stringify(42), 'invalid_message'],
      [
        JSON.stringify({ action: 'subscribe', subscriptions: Array.from({ length: 101 }, () => 'orders') }),
        'invalid_message',
      ],
    ];
    let index = 2;
    for (const [frame, code] of cases) {
      raw.ws.send(frame);
      const reply = await raw.nextMessage(index++);
      assert.equal(reply.type, 'error', `for ${String(frame).slice(0, 40)}`);
      assert.equal(reply.code, code, `for ${String(frame).slice(0, 40)}`);
      assert.equal(typeof reply.message, 'string');
    }
    // Still subscribed to account, and only to it.
    raw.ws.send(JSON.stringify({ action: 'subscribe', subscriptions: [] }));
    const state = await raw.nextMessage(index++);
    assert.deepEqual(state.subscriptions, ['account']);
    assert.ok((await metric('dashboard_client_messages_rejected_total', 'code="unknown_topic"')) >= 2);
    raw.ws.close();
  });

  test('MessagePack clients may send binary frames; garbage binary is rejected', async () => {
    const raw = await openSocket(running.url, { query: 'type=web&format=msgpack' });
    raw.ws.send(encode('msgpack', { action: 'subscribe', subscriptions: ['system'] }));
    const reply = await raw.nextMessage(0);
    assert.equal(reply.type, 'subscribed');
    const snapshot = await raw.nextMessage(1);
    assert.equal(
      (snapshot.data as JsonObject & { system: JsonObject }).system.epoch,
      running.app.state.epoch,
    );
    raw.ws.send(Buffer.from([0xc1, 0xc1, 0xc1]));
    const error = await raw.nextMessage(2);
    assert.equal(error.code, 'invalid_message');
    raw.ws.close();
  });

  test('a frame above websocket.max_message_size closes that socket with 1009', async () => {
    const raw = await openSocket(running.url);
    raw.ws.send('x'.repeat(5000));
    const { code } = await raw.closed;
    assert.equal(code, 1009);
  });

  test('an invalid type or format query is refused before the upgrade', async () => {
    for (const query of ['type=desktop', 'format=xml']) {
      const socket = new WebSocket(`${running.url.replace('http', 'ws')}/ws?${query}`);
      const [, response] = (await once(socket, 'unexpected-response')) as [unknown, { statusCode: number }];
      assert.equal(response.statusCode, 400, query);
      socket.on('error', () => {});
      socket.terminate();
    }
  });
});
