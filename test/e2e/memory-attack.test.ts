/**
 * The memory attack of issue 11, against the service as a process: 1 MB trades on 95 symbols (inside
 * ingest.max_symbols, every message inside ingest.max_message_size) and 12,000 distinct positions. Before the state
 * had a budget, the trades alone took the process from ~145 MB to 4 GB and a heap-out-of-memory abort; the systemd
 * unit's MemoryMax is 512M, and the peak RSS of the process must stay well under it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Redis } from 'ioredis';
import { TestRedis } from '../helpers/redis.ts';
import { type ServerProcess, startServerProcess } from '../helpers/security-process.ts';

const SYMBOLS = 95;
const TRADES_PER_SYMBOL = 6;
const POSITIONS = 12_000;
/** The unit's MemoryMax, and the V8 flags of its ExecStart. */
const MEMORY_MAX = 512 * 1024 * 1024;
const UNIT_NODE_OPTIONS = readUnitNodeOptions();

function readUnitNodeOptions(): string[] {
  const unit = readFileSync(new URL('../../systemd/dashboard-server.service', import.meta.url), 'utf8');
  const execStart = /^ExecStart=\S+ (.*)$/m.exec(unit)?.[1] ?? '';
  return execStart.split(' ').filter((word) => word.startsWith('--max-'));
}

/** The peak resident set size of a process so far (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

interface Debug {
  state_size: Record<string, number>;
  state_bytes: number;
  state_budget: number;
  ingest: {
    messages: { redis: Record<string, number> };
    invalid: { redis: Record<string, number> };
    refused: Record<string, Record<string, number>>;
  };
}

/** Trade messages the hub has dealt with, applied or refused. */
function tradesHandled(debug: Debug): number {
  return (debug.ingest.messages.redis.trades ?? 0) + (debug.ingest.invalid.redis.trades ?? 0);
}

/** Polls /debug until `done` holds (the hub is another process: there is no event to await). */
async function debugUntil(url: string, done: (debug: Debug) => boolean, timeoutMs = 45_000): Promise<Debug> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await fetch(`${url}/debug`);
    assert.equal(response.status, 200);
    const debug = (await response.json()) as Debug;
    if (done(debug)) return debug;
    if (Date.now() > deadline) throw new Error(`condition not reached: ${JSON.stringify(debug.ingest)}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe('memory attack: 1 MB trades and a flood of positions', () => {
  let redis: TestRedis;
  let publisher: Redis;
  let hub: ServerProcess;

  before(async () => {
    redis = await TestRedis.start();
    publisher = redis.client();
    hub = await startServerProcess(
      {
        redis: { url: redis.url },
        auth: { enabled: false },
        // The test reads /debug often while it waits; the REST budget is not what it is about.
        http: { rate_limit: { max: 100_000, window: '1m' } },
      },
      // The V8 limits the systemd unit runs with (systemd/dashboard-server.service).
      { nodeOptions: UNIT_NODE_OPTIONS },
    );
    const deadline = Date.now() + 20_000;
    while (!(await fetch(`${hub.url}/ready`)).ok) {
      if (Date.now() > deadline) throw new Error('the hub did not become ready');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  after(async () => {
    publisher?.disconnect();
    await hub?.close();
    await redis?.kill();
  });

  test('every trade over ingest.max_record_size is refused and counted; peak RSS stays under MemoryMax', async (t) => {
    const pad = 'x'.repeat(1_000_000);
    const total = SYMBOLS * TRADES_PER_SYMBOL;
    let published = 0;
    for (let trade = 0; trade < TRADES_PER_SYMBOL; trade++) {
      for (let symbol = 0; symbol < SYMBOLS; symbol++) {
        const payload = `{"trade_id":${trade},"price":1,"quantity":1,"timestamp":${trade + 1},"pad":"${pad}"}`;
        await publisher.publish(`trades:OOM${symbol}`, payload);
        published++;
        // The attack is about what the hub keeps, not about out-writing it: never more than 10 MB ahead of it
        // (Redis cuts a subscriber 32 MB behind, and a busy CI machine can fall that far behind).
        if (published % 10 === 0)
          await debugUntil(hub.url, (d) => (d.ingest.invalid.redis.trades ?? 0) >= published);
      }
    }
    const debug = await debugUntil(hub.url, (d) => tradesHandled(d) >= total);
    assert.equal(published, total);
    assert.equal(debug.ingest.refused.max_record_size.trades, total);
    assert.equal(debug.state_size.trades, 0);
    const peak = peakRss(hub.child.pid!);
    t.diagnostic(`peak RSS after the trades: ${(peak / 1048576).toFixed(0)} MB`);
    assert.ok(peak < MEMORY_MAX, `peak RSS ${(peak / 1048576).toFixed(0)} MB`);
    const metrics = await (await fetch(`${hub.url}/metrics`)).text();
    assert.match(metrics, /dashboard_ingest_refused_total\{limit="max_record_size",topic="trades"\} 570/);
    assert.match(metrics, /^dashboard_state_budget_used_ratio \d/m);
  });

  test('positions beyond ingest.max_entries (10,000) are refused, the state keeps 10,000', async () => {
    for (let batch = 0; batch < POSITIONS; batch += 1000) {
      const pipeline = publisher.pipeline();
      for (let i = batch; i < batch + 1000; i++) {
        pipeline.publish('positions:x', `{"symbol":"P${i}","quantity":1,"entry_price":100}`);
      }
      await pipeline.exec();
    }
    const debug = await debugUntil(
      hub.url,
      (d) => (d.ingest.refused.max_entries.positions ?? 0) >= POSITIONS - 10_000,
    );
    assert.equal(debug.state_size.positions, 10_000);
    assert.equal(debug.ingest.refused.max_entries.positions, POSITIONS - 10_000);
    assert.ok(debug.state_bytes <= debug.state_budget);
    const peak = peakRss(hub.child.pid!);
    assert.ok(peak < MEMORY_MAX, `peak RSS ${(peak / 1048576).toFixed(0)} MB`);
  });
});
