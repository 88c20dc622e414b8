import type { Redis } from 'ioredis';
import { type RunningApp, startApp, waitReady } from '../../scripts/lib/app.ts';
import { TestRedis } from './redis.ts';

// Starting the app in-process is shared with the benchmarks (scripts/lib/app.ts).
export { type RunningApp, startApp, waitReady };

/** What most end-to-end files need: their own Redis, a publisher connection to it, and the app on it, ready. */
export interface Stack {
  redis: TestRedis;
  publisher: Redis;
  running: RunningApp;
}

export async function startStack(overrides: Record<string, Record<string, unknown>> = {}): Promise<Stack> {
  const redis = await TestRedis.start();
  const publisher = redis.client();
  const running = await startApp(redis.url, overrides);
  await waitReady(running.app);
  return { redis, publisher, running };
}

export async function stopStack({ redis, publisher, running }: Stack): Promise<void> {
  publisher.disconnect();
  await running.close();
  await redis.kill();
}
