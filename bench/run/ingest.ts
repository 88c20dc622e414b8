/** The ingest scenario: the publisher at its maximum rate, no clients; messages applied per second by the hub. */
import type { ChildProcess } from 'node:child_process';
import { sleep } from '../common.ts';
import { log } from './context.ts';
import { metricSum, scrape, UsageSampler, waitQuiet } from './metrics.ts';
import { options } from './options.ts';
import { startHub, startPublisher, startRedis, stopPublisher, stopServer } from './processes.ts';
import type { IngestPhase } from './results.ts';

export async function runIngest(): Promise<IngestPhase[]> {
  await waitQuiet();
  const redis = await startRedis();
  const hub = await startHub(redis, 0, 'ingest');
  const results: IngestPhase[] = [];
  let publisher: ChildProcess | undefined;
  try {
    publisher = await startPublisher(redis, true);
    for (const phase of ['mix', 'market_data', 'orderbook', 'trades']) {
      publisher.send({ phase });
      await sleep(1000);
      const before = await scrape(hub.port);
      const sampler = new UsageSampler(
        { server: hub.child.pid!, publisher: publisher.pid!, redis: redis.pid! },
        hub.child.pid!,
      );
      await sleep(options.ingestSeconds * 1000);
      const after = await scrape(hub.port);
      const { usage, seconds } = sampler.finish();
      const byTopic: Record<string, number> = {};
      for (const topic of ['market_data', 'orderbook', 'trades']) {
        const label = `topic="${topic}"`;
        byTopic[topic] =
          (metricSum(after, 'dashboard_ingest_messages_total', label) -
            metricSum(before, 'dashboard_ingest_messages_total', label)) /
          seconds;
      }
      const applied =
        (metricSum(after, 'dashboard_ingest_messages_total') -
          metricSum(before, 'dashboard_ingest_messages_total')) /
        seconds;
      const result: IngestPhase = {
        phase,
        appliedPerSec: applied,
        invalid:
          metricSum(after, 'dashboard_ingest_invalid_total') -
          metricSum(before, 'dashboard_ingest_invalid_total'),
        hubCpuPct: usage.server.cpuPct,
        publisherCpuPct: usage.publisher.cpuPct,
        redisCpuPct: usage.redis.cpuPct,
        perCorePerSec: applied / Math.max(0.01, usage.server.cpuPct / 100),
        cores: usage.server.cores,
        byTopic,
      };
      results.push(result);
      log(
        `  ingest ${phase}: ${Math.round(applied).toLocaleString('en-US')} messages/s applied, hub CPU ${result.hubCpuPct.toFixed(0)}% (${Math.round(result.perCorePerSec).toLocaleString('en-US')}/s per core), publisher ${result.publisherCpuPct.toFixed(0)}%, redis ${result.redisCpuPct.toFixed(0)}%, invalid ${result.invalid}`,
      );
    }
    publisher.send({ phase: 'idle' });
  } finally {
    if (publisher) await stopPublisher(publisher);
    await stopServer('hub', hub.child, 'ingest');
    await redis.kill();
  }
  return results;
}
