import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { buildApp } from '../../src/app.ts';
import { configFromDocument } from '../../src/config.ts';
import { TestRedis } from './redis.ts';

export interface RunningApp {
  app: FastifyInstance;
  /** `http://127.0.0.1:PORT` */
  url: string;
  close(): Promise<void>;
}

/** Builds and starts the service on a free port against `redisUrl`, with `overrides` merged into the config. */
export async function startApp(
  redisUrl: string,
  overrides: Record<string, Record<string, unknown>> = {},
  { logStream }: { logStream?: NodeJS.WritableStream } = {},
): Promise<RunningApp> {
  // Auth is off unless a test configures it: the data-path tests are not about tokens.
  const document: Record<string, Record<string, unknown>> = {
    server: { host: '127.0.0.1', port: 0, log_level: 'silent' },
    redis: { url: redisUrl },
    auth: { enabled: false },
  };
  for (const [section, keys] of Object.entries(overrides))
    document[section] = { ...document[section], ...keys };
  const config = configFromDocument(document);
  const app = await buildApp(config, logStream ? { logStream } : { logger: false });
  await app.listen({ host: config.server.host, port: 0 });
  const { port } = app.server.address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

/** Resolves when /ready says the app is subscribed and loaded. */
export async function waitReady(app: FastifyInstance, timeoutMs = 5000): Promise<void> {
  if (app.redisIngest.notReadyReason() === undefined) return;
  await once(app.redisIngest.events, 'loaded', { signal: AbortSignal.timeout(timeoutMs) });
}

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
