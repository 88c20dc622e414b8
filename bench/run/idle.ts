/** The idle scenario: memory per connected, then subscribed, client with no traffic. */
import { request, rssBytes, sleep } from '../common.ts';
import { defaultWebShare, population } from '../mix.ts';
import { log, symbolList } from './context.ts';
import { metricSum, scrape, UsageSampler, waitQuiet } from './metrics.ts';
import { options } from './options.ts';
import {
  closeLoadgens,
  type Loadgen,
  startBaseline,
  startHub,
  startLoadgens,
  startPublisher,
  startRedis,
  stopPublisher,
  stopServer,
} from './processes.ts';
import type { IdleResult } from './results.ts';

export async function runIdle(kind: string, clients: number): Promise<IdleResult> {
  await waitQuiet();
  const redis = await startRedis();
  const server =
    kind === 'hub'
      ? await startHub(redis, clients, `idle-${clients}`)
      : await startBaseline(kind, redis, {}, `idle-${clients}`);
  let loadgens: Loadgen[] = [];
  const heap = async () =>
    kind === 'hub'
      ? metricSum(await scrape(server.port), 'nodejs_heap_size_used_bytes') / 1048576
      : Number.NaN;
  try {
    // A state to subscribe to, then no more traffic: the clients are connected, then subscribed, and idle.
    const publisher = await startPublisher(redis);
    await sleep(1500);
    await stopPublisher(publisher);
    await sleep(1000);
    const base = rssBytes(server.child.pid!);
    const heapBase = await heap();
    const specs = population(clients, options.webShare ?? defaultWebShare(clients), symbolList(), 0);
    const connect = await startLoadgens(server, specs, false);
    loadgens = connect.loadgens;
    await sleep(4000);
    const connected = rssBytes(server.child.pid!);
    const heapConnected = await heap();
    await Promise.all(loadgens.map((l) => request(l.child, { cmd: 'subscribe' }, 'subscribed', 90_000)));
    await sleep(4000);
    const sampler = new UsageSampler({ server: server.child.pid! }, server.child.pid!);
    await sleep(1000);
    const { usage } = sampler.finish();
    const end = rssBytes(server.child.pid!);
    const heapEnd = await heap();
    const ready = Math.max(1, connect.ready);
    const result: IdleResult = {
      kind,
      clients,
      ready: connect.ready,
      baseMB: base / 1048576,
      connectedMB: connected / 1048576,
      endMB: end / 1048576,
      perClientKB: (end - base) / 1024 / ready,
      connectedPerClientKB: (connected - base) / 1024 / ready,
      heapMB: kind === 'hub' ? [heapBase, heapConnected, heapEnd] : undefined,
      cores: usage.server.cores,
    };
    log(
      `  idle ${kind}: ${connect.ready} clients, RSS ${result.baseMB.toFixed(1)} → ${result.connectedMB.toFixed(1)} (connected) → ${result.endMB.toFixed(1)} MB (subscribed): ${result.connectedPerClientKB.toFixed(1)} / ${result.perClientKB.toFixed(1)} KB per idle client` +
        (result.heapMB ? `; heap ${result.heapMB.map((h) => h.toFixed(1)).join(' → ')} MB` : ''),
    );
    return result;
  } finally {
    await closeLoadgens(loadgens);
    await stopServer(kind, server.child, 'idle');
    await redis.kill();
  }
}
